# The two set-up commands of the README are `make demo` and `make test`.
SHELL := /bin/bash
VENV := .venv/bin
# read by the shell when a recipe runs, once its services are up
SERVICES_ENV = $$(scripts/services.sh env)

.PHONY: demo test ready lint typecheck deploy-check unit integration services services-stop cluster bootstrap bench

bootstrap:
	scripts/bootstrap.sh

services:
	scripts/services.sh start

services-stop:
	scripts/services.sh stop

## services + the worker processing the sample batch end to end, results printed
demo: bootstrap services
	env $(SERVICES_ENV) $(VENV)/profile-worker demo

lint: bootstrap
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .

typecheck: bootstrap
	$(VENV)/mypy

## deploy/ and docker-compose.yml against Kubernetes, KEDA and Compose schemas (tools cached once)
deploy-check:
	scripts/validate-deploy.sh

## the three-node RabbitMQ cluster beside the default node (network namespaces; needs root or sudo)
cluster: services
	PW_RABBITMQ_NODES=3 scripts/services.sh start >/dev/null

## everything the tests need, in parallel where it can be: installs, services, cluster, checks
ready: bootstrap services cluster lint typecheck deploy-check

## lint, types, and every test against the real services, the cluster fault tests included
test:
	$(MAKE) --no-print-directory -j4 --output-sync=target ready
	env $(SERVICES_ENV) CLUSTER_AMQP_URL=$$(scripts/rabbitmq-cluster.sh addresses) \
		$(VENV)/pytest --cov --cov-report=term:skip-covered --durations=15

## pure logic, and the processors, the chaos findings and the store contract on the real store
## (MongoStore on the services' MongoDB-wire server, a fresh database per test): no worker, no
## broker traffic; `-m "not services"` of these alone needs no services
unit: bootstrap services
	env $(SERVICES_ENV) $(VENV)/pytest tests/unit tests/contract tests/chaos/test_findings.py -m "not integration"

integration: bootstrap services
	env $(SERVICES_ENV) $(VENV)/pytest tests/integration

bench: bootstrap services
	env $(SERVICES_ENV) $(VENV)/python -m bench.run
