"""`lvp profiles`: the viewer status state machine (:mod:`profiles.state`), the device class
(:mod:`profiles.device`), the in-order fold of a viewer's events (:mod:`profiles.fold`) and the
per-viewer engine that makes the delivery order irrelevant (:mod:`profiles.engine`), fed by the
Kafka consumer and kept in DynamoDB. The profile it builds is :mod:`lvp.profile`."""
