"""Runtime: the ECS "agent" running the deployed app as local processes, the ALB stand-in and traffic.

`python -m shipbook.sandbox.runtime --state-dir DIR --aws-url URL --alb-port P [--app-repo BARE]`
"""
