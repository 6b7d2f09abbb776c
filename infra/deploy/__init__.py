"""lintas.infra.deploy: deployment files and what renders them.

* :mod:`.certs`: a private certificate authority and the certificates NATS TLS needs;
* :mod:`.config`: rendering a deployment directory (``lintas infra config --out DIR``);
* the shipped nats-server configs (single node, three-node cluster) and ``production/``.
"""

__all__: list[str] = []
