"""The development stack: what stands in for the outside world on a machine with nothing configured.

- `stack.py`, the supervisor behind `make run` (`python -m devstack.stack run`), and the embedded
  services (PostgreSQL from pgserver, moto's S3 and SQS, the sandbox) that `tests/stack.py` starts;
- `sandbox/`, a look-alike of Meta's Graph API and of AWS End User Messaging SMS, in its own process;
- a small Django app with `manage.py sandbox_inbound`, installed only when DEVSTACK is on (the
  supervisor and the tests set it).

Nothing in the production apps imports from here, and `requirements.txt` installs none of its needs.
"""
