"""CloudWatch dashboards and alarms as code (used by the CDK app's monitoring construct)."""
