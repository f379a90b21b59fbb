"""Store alerts (SPEC sections 14 and 15): a second outbox of signed JSON POSTs to stores.

`outbox.enqueue_alert` queues one in the caller's transaction; `sender.AlertSender` claims
and POSTs them in the background; `signing` makes and checks `X-Geopush-Signature`;
`destination` decides which addresses an alert may reach.
"""
