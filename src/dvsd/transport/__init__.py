"""Group transports: Spread, single-node, and the local SysV message queues."""
