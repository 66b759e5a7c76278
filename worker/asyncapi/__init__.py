"""The AsyncAPI 3.0.0 document of SPEC §2 to §7, generated from the contract models and the
topology, so the published description is what the worker decodes, declares and sends.

It describes the whole product, so it may read the contract, the settings and the runtime's
constants (routes, header names); nothing in the worker imports it but the CLI.

Operations are the worker's own: it receives commands and sends answers, events and copies of
commands (retries, dead letters). AsyncAPI has one `headers` object per message; here it lists
the AMQP properties the worker reads or sets (`reply_to`, `correlation_id`, …) beside the `x-…`
entries of the headers table, and each description says which is which.
"""

from worker.asyncapi.document import asyncapi_document

__all__ = ["asyncapi_document"]
