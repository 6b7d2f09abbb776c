"""lintas.infra.nats: the bus.

* :mod:`.access`: who may do what, the one description every permission is generated from;
* :mod:`.background`: a task on a NATS connection of its own;
* :mod:`.bus`: how a command finds and connects to the bus;
* :mod:`.credentials`: how a process proves who it is to NATS;
* :mod:`.embedded`: the embedded default, a real ``nats-server`` owned by this process;
* :mod:`.headers`: message headers read without the email parser;
* :mod:`.identities`: a data directory's identities and the server authorization from them;
* :mod:`.topology`: every JetStream object lintas runs on, declared once.
"""

__all__: list[str] = []
