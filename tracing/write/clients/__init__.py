"""Thin, typed wrappers per client, with the client's exact signatures.

Each wrapper turns its client's calls into the send and process operations
(:mod:`tracing.write.operations`) through its provider, and passes everything else
through to the wrapped client.
"""
