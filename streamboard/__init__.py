"""Streamboard: streaming analytics and leaderboards on AWS, runnable whole on one machine."""

__version__ = "0.1.0"
