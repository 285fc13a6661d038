"""Monitoring: the alarms and the dashboard of ``dashboards/``, every alarm to one encrypted SNS topic."""

from __future__ import annotations

from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from dashboards.pipeline import PipelineResources, alarm_specs, dashboard_rows
from streamboard_infra import scan


class Monitoring(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, name: str, resources: PipelineResources,
                 alarm_email: str) -> None:
        super().__init__(scope, construct_id)
        # A customer key: CloudWatch alarms cannot publish to a topic encrypted with the aws/sns key.
        self.key = kms.Key(self, "AlarmsKey", enable_key_rotation=True,
                           description="Streamboard: encrypts the alarm topic")
        self.key.add_to_resource_policy(iam.PolicyStatement(
            principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
            actions=["kms:Decrypt", "kms:GenerateDataKey"],
            resources=["*"],  # in a key policy, "*" is this key
        ))
        self.topic = sns.Topic(self, "Alarms", display_name=f"{name} alarms", master_key=self.key, enforce_ssl=True)
        if alarm_email:
            subscription = self.topic.add_subscription(subscriptions.EmailSubscription(alarm_email))
            scan.ignore_serverless(subscription, {
                "ES7000": "This is the alarm topic: a dead-letter queue behind its subscription could only alarm "
                          "through the same topic. SNS retries email delivery itself.",
            })
        action = cw_actions.SnsAction(self.topic)
        self.alarms: dict[str, cw.Alarm] = {}
        for spec in alarm_specs(resources):
            alarm = cw.Alarm(
                self, spec.id,
                alarm_description=spec.description,
                metric=spec.metric,
                threshold=spec.threshold,
                comparison_operator=spec.comparison,
                evaluation_periods=spec.evaluation_periods,
                datapoints_to_alarm=spec.datapoints_to_alarm,
                treat_missing_data=spec.treat_missing_data,
            )
            alarm.add_alarm_action(action)
            alarm.add_ok_action(action)
            self.alarms[spec.id] = alarm
        self.dashboard = cw.Dashboard(self, "Dashboard", dashboard_name=name,
                                      widgets=dashboard_rows(resources, list(self.alarms.values())))
