"""PACS clients of the engine: node configuration, DIMSE SCU, DICOMweb and priority flags.

Everything here talks to another system; the pipeline never imports it (STYLE H1). Each outbound
failure becomes one :class:`~triage.adapters.pacs.errors.DeliveryError`, mapped once by the caller
(retry from the outbox, or report the node as down).
"""
