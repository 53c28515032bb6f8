# shipbook — release runbooks. `make` lists the targets. The Makefile builds .venv by itself.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
LAB_STAMP := $(VENV)/.lab-installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
ENV ?= sandbox
SB := $(PY) -m shipbook
# User values reach the shell only as quoted environment variables, never spliced into a command line.
export ENV VERSION RESUME SCENARIO TITLE INCIDENT PREVIOUS_VERSION SNAPSHOT START SUSPECT REPORT_LANG SECURITY_ISSUE \
	DB_ACTION PREVENTION
VERSION_ARGS = "$$VERSION" --env "$$ENV" $(if $(filter 1 yes true,$(DRY_RUN)),--dry-run) $(if $(RESUME),--resume "$$RESUME") \
	$(if $(REPORT_LANG),-p lang="$$REPORT_LANG")
PHASES := precheck backup deploy verify rollback report

.PHONY: help release $(PHASES) incident postmortem notes runs audit lab test lint clean sandbox sandbox-down rehearse rehearsals

help: ## list the targets
	@echo "shipbook — release runbooks (ENV=$$ENV)"
	@echo "  make release VERSION=v1.0.0 [ENV=sandbox] [DRY_RUN=1] [RESUME=RUN_ID] [REPORT_LANG=ja|en]  run the release"
	@echo "  make precheck VERSION=…                      run only the pre-release checks (a new run)"
	@echo "  make backup VERSION=…                        run only the pre-deploy database snapshot (a new run)"
	@echo "  make deploy VERSION=…                        run only the deploy: tag, push, watch the rollout (a new run)"
	@echo "  make verify VERSION=…                        run only the post-deploy verification (a new run)"
	@echo "  make report VERSION=…                        run only the completion report (a new run)"
	@echo "  make rollback VERSION=v1.0.0 [PREVIOUS_VERSION=…] [SNAPSHOT=…] [DB_ACTION=auto|reverse|restore|none] [CONFIRM_DB_RESTORE=1]  roll a release back"
	@echo "  SECURITY_ISSUE=\"…\" with release/verify: a person declares a serious security problem (→ ROLLBACK)"
	@echo "  make rehearse VERSION=v1.0.0 SCENARIO=name   a release against the sandbox with a fault injected"
	@echo "  make incident [TITLE=…] [START=iso] [SUSPECT=v1.0.0] [REPORT_LANG=ja|en]  open an incident"
	@echo "  make incident INCIDENT=id PREVENTION=\"…\"      re-run its checks now, record a prevention item"
	@echo "  make postmortem INCIDENT=id [REPORT_LANG=ja|en]  write the postmortem of an incident"
	@echo "  make notes VERSION=v1.1.0                    draft release notes from the commits since the previous tag"
	@echo "  make runs                                    list runs (env, version, status, started, operator, duration)"
	@echo "  make audit                                   verify the audit trail (hash chain and files)"
	@echo "  make lab [LAB_PORT=8888] [NO_BROWSER=1]      JupyterLab at the project root (notebooks/, runs/), library importable"
	@echo "  make sandbox | sandbox-down                  start / stop the local twin of production"
	@echo "  make test                                    run the test suite (without the rehearsals)"
	@echo "  make rehearsals                              long end-to-end rehearsals against a sandbox of their own"
	@echo "  make lint                                    ruff + bandit on shipbook itself"
	@echo "  make clean                                   remove .venv, caches and the sandbox state (keeps runs/)"

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing shipbook and its dependencies into $(VENV) …"
	@$(PY) -m pip install -q --disable-pip-version-check -e '.[sandbox,dev]' > $(VENV)/pip.log 2>&1 \
		|| { tail -30 $(VENV)/pip.log >&2; echo "error: installing into $(VENV) failed (log: $(VENV)/pip.log)" >&2; exit 1; }
	@rm -f $(VENV)/.installed-* && touch $@

# JupyterLab is its own extra: installed on the first `make lab` (and for the tests), never for a release.
$(LAB_STAMP): $(STAMP)
	@echo "installing JupyterLab into $(VENV) (first make lab) …"
	@$(PY) -m pip install -q --disable-pip-version-check -e '.[sandbox,dev,lab]' > $(VENV)/pip-lab.log 2>&1 \
		|| { tail -30 $(VENV)/pip-lab.log >&2; echo "error: installing JupyterLab failed (log: $(VENV)/pip-lab.log)" >&2; exit 1; }
	@rm -f $(VENV)/.lab-installed-* && touch $@

need-version = $(if $(VERSION),,$(error VERSION is required, e.g. make $@ VERSION=v1.0.0))

release: $(STAMP)
	$(need-version)
	@$(SB) release $(VERSION_ARGS)

$(filter-out rollback,$(PHASES)): $(STAMP)
	$(need-version)
	@$(SB) $@ $(VERSION_ARGS)

rollback: $(STAMP)
	$(need-version)
	@$(SB) rollback $(VERSION_ARGS) $(if $(PREVIOUS_VERSION),--previous-version "$$PREVIOUS_VERSION") \
		$(if $(SNAPSHOT),--snapshot "$$SNAPSHOT") $(if $(filter 1 yes true,$(CONFIRM_DB_RESTORE)),--confirm-db-restore) \
		$(if $(DB_ACTION),--db-action "$$DB_ACTION")

rehearse: $(STAMP)
	$(need-version)
	@$(SB) sandbox reset --scenario "$${SCENARIO:-healthy}"
	@$(SB) release "$$VERSION" --env sandbox

incident: $(STAMP)
	@$(SB) incident --env "$$ENV" --title "$$TITLE" --start "$$START" --version "$$SUSPECT" \
		$(if $(REPORT_LANG),--lang "$$REPORT_LANG") $(if $(INCIDENT),--id "$$INCIDENT") \
		$(if $(PREVENTION),--prevention "$$PREVENTION")

postmortem: $(STAMP)
	$(if $(INCIDENT),,$(error INCIDENT is required, e.g. make postmortem INCIDENT=<id>))
	@$(SB) postmortem "$$INCIDENT" --env "$$ENV" $(if $(REPORT_LANG),--lang "$$REPORT_LANG")

notes: $(STAMP)
	$(need-version)
	@$(SB) notes "$$VERSION" --env "$$ENV"

runs: $(STAMP)
	@$(SB) runs

audit: $(STAMP)
	@$(SB) audit

lab: $(LAB_STAMP)
	@$(SB) lab --env "$$ENV" $(if $(LAB_PORT),--port "$$LAB_PORT") $(if $(filter 1 yes true,$(NO_BROWSER)),--no-browser)

sandbox: $(STAMP)
	@$(SB) sandbox up $(if $(SCENARIO),--scenario "$$SCENARIO")

sandbox-down: $(STAMP)
	@$(SB) sandbox down

test: $(LAB_STAMP)
	@$(VENV)/bin/pytest -n 2 --dist loadgroup -m "not rehearsal" $(PYTEST_ARGS)

rehearsals: $(STAMP)
	@$(VENV)/bin/pytest -m rehearsal -p no:randomly -s tests/e2e $(PYTEST_ARGS)

lint: $(STAMP)
	@$(VENV)/bin/ruff check lib tests bench
	@$(VENV)/bin/bandit -q -c pyproject.toml -r lib

clean:
	-@[ -x $(PY) ] && $(SB) sandbox down >/dev/null 2>&1 || true
	rm -rf $(VENV) .pytest_cache .ruff_cache .sandbox build lib/*.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
