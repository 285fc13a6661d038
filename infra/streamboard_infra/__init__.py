"""The Streamboard CDK app: one construct per pipeline stage, composed by :class:`StreamboardStack`."""
