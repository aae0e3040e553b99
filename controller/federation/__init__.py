"""Federation of coops: signed per-interval offers exchanged over bridged MQTT brokers.

No coop holds the pen: every coop runs the same deterministic allocation
(:mod:`.allocation`) over the same signed offers (:mod:`.offers`) and
publishes a hash of its result; :mod:`.reconcile` finds missing offers and
disagreements, :mod:`.transport` moves it all over MQTT, :mod:`.charter`
says who is a member, with which key, until when.
"""
