"""The AWS half of the sandbox: a moto server with the behaviour moto 5.2.5 lacks.

Entry points:
- `python -m shipbook.sandbox.aws_twin --port P --state-dir DIR` (`server.main`): the process.
- `shipbook.sandbox.aws_twin.seed.seed(endpoint_url)`: the demo stack and its out-of-band parts.

Extension modules (each patches one area of moto in the server process): `cfn_models`,
`cfn_fixes`, `cfn_events`, `ecs_rollout`, `elb_targets`, `rds_snapshots`, `rds_data`, `cw_percentiles`, `cw_alarms`,
`sns_outbox`, `iam_simulate`; `control` serves `/_sandbox/*`, `ticker` drives time.
"""

from __future__ import annotations

ACCOUNT_ID = "123456789012"
REGION = "ap-northeast-1"
MOTO_VERSION = "5.2.5"
