"""The edge agent: a household's own small computer reads its devices and talks to the coop.

* :mod:`.config`: the agent's TOML (its member id, the coop broker, its devices);
* :mod:`.spool`: numbered readings kept on disk until the broker acknowledged them;
* :mod:`.link`: the MQTT side (readings out in order, commands in);
* :mod:`.mandates`: setpoints and load switches with their expiry, and the safe state;
* :mod:`.runner`: the loop that ties them together (``commonwatt agent CONFIG``);
* :mod:`.inbox`: the coop's side, booking each numbered reading exactly once.
"""
