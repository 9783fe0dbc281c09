"""Accounting and showback over the placement history: pure values in, pure values out.

``usage`` cuts placement records to a period and sums them by VM, host, namespace, stack or user; ``pricing``
prices them with the configured price book. The CLI (``nebctl accounting``, ``nebctl showback``) reads the
records from the database, calls these, and stores or prints the result; nothing here does I/O.
"""
