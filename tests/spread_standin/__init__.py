"""A stand-in Spread 4.0 daemon for tests, and the code that launches daemons.

``python -m tests.spread_standin --port P`` serves the daemon side of the
client protocol; ``control.StandinControl`` drives its partition/merge
channel; ``launch`` starts stand-ins or real Spread daemons for the fixtures
in tests/conftest.py.
"""
