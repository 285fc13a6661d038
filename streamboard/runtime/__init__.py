"""The local runtime: what AWS does for the pipeline, done faithfully to AWS's contracts."""
