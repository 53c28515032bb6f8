"""GitHub twin: the subset of GitHub's REST API the release code uses, and the deployer.

`python -m shipbook.sandbox.github_twin --port P --state-dir DIR --aws-url URL [--repo BARE]`
"""
