"""Run folders: one object per work directory (and per run inside one) that owns its files.

  RunFolder      paths, formats, reads and writes of every result (`folder.py`, names in
                 `layout.py`); nested runs are RunFolders too (`folder.method("rum")`)
  manifest       what rum-jax wrote there, with digests (`rum_jax.manifest`, recorded by the
                 one atomic writer `rum_jax.io`): --overwrite deletes only that, a folder
                 holding anything else is refused, a result replaced since is refused
  made_by        which config or record made a folder; `check_config` refuses another before
                 anything is written, `claim` keys a folder by the record of its result
  locks          a run holds its folder and every folder below it
  session        a command's hold on its work directory (refusals and failures change nothing)

docs/architecture.md ("Run folders") describes how a pipeline uses them.
"""
from rum_jax.runfolder import layout
from rum_jax.runfolder.folder import ForeignFolderError, ReplacedFileError, RunFolder, WorkdirError
from rum_jax.runfolder.locks import WorkdirBusyError, hold
from rum_jax.runfolder.made_by import (ConfigCheck, check_config, claim, config_of, differences, digest, file_digest, flatten,
                                       kind_of, made_by, prepare, record_digest, write_config)
from rum_jax.runfolder.session import make, session, writable

__all__ = ["ConfigCheck", "ForeignFolderError", "ReplacedFileError", "RunFolder", "WorkdirBusyError", "WorkdirError",
           "check_config", "claim", "config_of", "differences", "digest", "file_digest", "flatten", "hold", "kind_of", "layout",
           "made_by", "make", "prepare", "record_digest", "session", "writable", "write_config"]
