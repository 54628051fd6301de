"""The transfer engine: one file from several sources, verified, then renamed.

Used by the client's ``get`` and by a secondary's replication alike, so the
secondary never imports the client. Its parts, each with one job:

- L{plan}: which chunk goes to which source, endgame duplicates, bans and
  retries. Pure: no reactor, no files.
- L{store}: the only owner of the ``.part`` descriptor. Writes land only
  inside a chunk currently requested from their writer, are hashed as they
  land, and a verified chunk is never written again; the rename happens only
  once every chunk verified and the size is right.
- L{source}: one connection to one source, each request an explicit state
  machine (L{redesdl.machines.chunk_request}), so a chunk nobody asked for
  drops the source.
- L{fetcher}: what the loop needs of a source, so tests can pass fakes.
- L{download}: the loop tying them together on a reactor (or a fake clock).
- L{result}: what a download did (its result and timeline).
- L{placement}: putting a replicated copy in place inside the data folder.
"""
