"""The chaos run (issue #6): nothing lost, nothing doubled, nobody overbooked, under faults.

The real pipeline (2 gateways, 4 routing worker processes, the stats worker and the sweeper,
on private RabbitMQ, PostgreSQL and Redis servers: ``servers.py``) takes a generated workload
of five sites (``traffic.py``: transfers, snoozes, status flaps, ratings, sales, 5% resent
events, garbage, from several publishers at once; three sites use the routing policy of
contract v2: hours, overflow, queue caps, priorities, sticky routing, answer deadlines, idle
closes) while ``faults.py`` SIGKILLs workers and gateways and restarts RabbitMQ, PostgreSQL
and Redis at random moments. Then ``checks.py`` compares everything with the oracle,
``chatroute replay`` of the same events in the order the pipeline recorded them.

    python -m tests.chaos            # the full run: 20,000 events and more
    python -m tests.chaos --short    # the CI form (tests/chaos/test_chaos.py), under 5 minutes

It prints a table and ends with ``chaos: events=N faults=F lost=L duplicated=D overbooked=O
violations=V``; the exit status is 0 only when L, D, O and V are all 0.
"""
