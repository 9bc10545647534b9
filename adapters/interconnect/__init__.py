"""T/CEC 102 (中电联互联互通): serving peer platforms and calling them (docs/interconnect.md).

    tcec/         the protocol, pure: codec.py (AES, Sig), envelope.py (envelopes, Ret, TimeStamp, Seq),
                  wire.py (exact JSON), dialect.py (spellings), fields.py and models/ (business objects),
                  interfaces.py (who calls what), peer.py, receive.py (the pipeline), routing.py (handlers)
    store/        the tables: peers (sealed credentials), tokens issued and held, envelopes seen
    handlers/     one module per group of interfaces, on one table
    service.py    the server side of an envelope, HTTP aside (Door)
    door.py       POST /evcs/v1/{interface} and mount(app)
    client.py     TcecClient: calling a peer
"""
