"""Put a finished copy at a name inside a folder tree, never leaving the tree.

Replication writes files whose names came from the network. Each parent
folder is created and then opened relative to its own parent with
``O_NOFOLLOW | O_DIRECTORY``, so a symlink (or a file) planted anywhere on the
way is refused before anything is created beyond it, not detected afterwards.
The final link is made relative to the last folder opened, and never replaces
an existing file.
"""

from __future__ import annotations

import errno
import os
import stat

from redesdl.manifest import Manifest
from redesdl.transfer.errors import IntegrityError
from redesdl.transfer.store import EMPTY_SHA256

_FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def open_folder_inside(root: str, parts: list[str]) -> int:
    """Open (creating as needed) C{root}/C{parts}, following no symlink in parts.

    Returns a descriptor of the innermost folder; raises OSError: ELOOP if a
    component is a symlink, ENOTDIR if it is not a folder.
    """
    fd = os.open(root, _FOLDER)
    try:
        for part in parts:
            if part in ("", ".", "..") or "/" in part:
                raise OSError(errno.EINVAL, f"bad folder name {part!r}")
            try:
                os.mkdir(part, 0o755, dir_fd=fd)
            except FileExistsError:
                pass
            try:
                child = os.open(part, _FOLDER | os.O_NOFOLLOW, dir_fd=fd)
            except OSError:
                if stat.S_ISLNK(os.lstat(part, dir_fd=fd).st_mode):
                    raise OSError(errno.ELOOP, f"{part} is a symbolic link") from None
                raise
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def place_inside(root: str, name: str, staged: str) -> str:
    """Move C{staged} to C{root}/C{name}; raise FileExistsError if it exists.

    Returns the path placed.
    """
    *folders, leaf = name.split("/")
    fd = open_folder_inside(root, folders)
    try:
        try:
            os.link(staged, leaf, dst_dir_fd=fd, follow_symlinks=False)
        except OSError as e:
            if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
                raise
            try:
                os.stat(leaf, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                os.rename(staged, leaf, dst_dir_fd=fd)
            else:
                raise FileExistsError(errno.EEXIST, "file exists", name) from None
        else:
            os.unlink(staged)
        os.fsync(fd)
    finally:
        os.close(fd)
    return os.path.join(root, *folders, leaf)


def check_copy(path: str, manifest: Manifest) -> None:
    """Raise L{IntegrityError} unless C{path} may be a finished copy of C{manifest}.

    The store verified every chunk before renaming; this checks what it left:
    a regular file (not a symlink) of the right size, and for an empty file,
    the hash of nothing.
    """
    info = os.lstat(path)
    if not stat.S_ISREG(info.st_mode):
        raise IntegrityError(f"{path} is not a regular file")
    if info.st_size != manifest.size:
        raise IntegrityError(f"{path} is not {manifest.size} bytes long")
    if manifest.size == 0 and manifest.sha256 != EMPTY_SHA256:
        raise IntegrityError(f"{manifest.name} is empty but its sha256 says otherwise")
