"""lintas.infra: what every lintas process runs on, below producers and consumers.

* :mod:`.bootstrap`: a process's parts, each built once from its Settings;
* :mod:`.canonical`: contracts' canonical JSON, written by orjson;
* :mod:`.clock`: an injectable "now" for code that acts on deadlines;
* :mod:`.db`: projection databases, the tracking table, one transaction per batch;
* :mod:`.errors`: the infrastructure's errors, on the tree of ``lintas.contracts.errors``;
* :mod:`.reads`: the few reads of the stream an agency needs, and the service that makes them;
* :mod:`.settings`: the one settings object of a process, from ``LINTAS_*`` variables;
* :mod:`.deploy`, :mod:`.keys`, :mod:`.nats`, :mod:`.observability`, :mod:`.privacy`:
  see each package.

Nothing is exported from here: each name is imported from its module.
"""

__all__: list[str] = []
