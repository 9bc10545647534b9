"""T/CEC 102 (中电联互联互通): serving peer platforms and calling them (docs/interconnect.md).

    tcec/         the protocol, pure: codec.py (AES, Sig), envelope.py (envelopes, Ret, TimeStamp, Seq),
                  wire.py (exact JSON), dialect.py (spellings), fields.py and models/ (business objects),
                  interfaces.py (who calls what), peer.py, receive.py (the pipeline), routing.py (handlers)
    store/        the tables: peers (sealed credentials), tokens issued and held, envelopes seen, starts
                  made for peers, station profiles, the outbox and disputes, what peers pushed us, the
                  catalogue of an infrastructure peer's piles
    handlers/     one module per group of interfaces, on one table
    mapping.py    our ids and states as T/CEC's (StationID, ConnectorID, a session's StartChargeSeq for a
                  regulator, connector status, StopReason)
    amounts.py    the ledger's fixed point as T/CEC's decimals (prices, PolicyInfos, ChargeDetails)
    catalogue.py  the views as StationInfo (and the builder of the regulators' pushes), connector statuses,
                  station statistics
    charges.py    a session as the live snapshot and the final order
    roaming.py    starts and stops for a customer platform's users, paid on its partner account
    outbox/       the pushes, to customer and regulator peers: follower, schedule, sender, the role
                  (chargeledger tcec-outbox)
    customer/     we as customer platform: an infrastructure peer's catalogue pulled for our drivers
    service.py    the server side of an envelope, HTTP aside (Door)
    door.py       POST /evcs/v1/{interface} and mount(app)
    client.py     TcecClient: calling a peer
"""
