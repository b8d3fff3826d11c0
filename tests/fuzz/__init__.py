"""The hostile-input fuzz of the gateway (#6).

- ``messages``: hypothesis strategies of hostile messages, in gateway batches.
- ``world``: the intake and the workers on a database with a victim tenant and on a twin
  without it, the contract's account of each message, and the census of outcomes.
- ``__main__``: ``python -m tests.fuzz --inputs 20000``, a long run that prints its counts.

``tests/integration/test_fuzz.py`` runs it in CI; ``tests/e2e/test_gateway_fuzz.py`` sends
such messages through the real broker to the real gateway.
"""
