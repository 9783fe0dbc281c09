"""A cache of validated manifest files, so that loading an unchanged set costs reading its text, not parsing it.

``load_paths_cached`` gives exactly what ``schemas.loading.load_paths`` gives (the same ``ManifestSet``, the same
``ManifestError`` with the same diagnostics), only faster when the files were loaded before. Used by the CLI's
``diff``, ``apply`` and ``destroy`` and by the service, with a directory under the state directory.

What is kept, in ``DIRECTORY/manifests/``:

- per file, the documents it holds once checked on its own, keyed by a digest of its name and its exact text
  (never its modification time, so a file rewritten within the same second is read again), with each
  document's digest as applied and the references it makes (read back only when the set must be checked across
  documents again: after one file of 10,000 documents changed, reading every document's references again was a
  third of the load);
- per set, an empty marker saying that this list of files, in this order, passed the checks across documents;
- per list of file names, the entries of the last set of them that passed. After an edit of a few files, the set
  passes without the whole check when each edited file's documents pass their own checks and read to the checks
  across documents as they did in that set (the same keys, reference targets, static addresses, networks;
  ``validation.crossing``). Anything else checks the whole set.

The documents of a set loaded here are a ``CachedDocuments`` mapping: each file's are read back from its entry
when one of them is first asked for, so that a plan made from a kept trace reads only the edited files'. Their keys
(and the distinct placement requirements of the VMs, which tell whether a plan reads usage figures) come with the
entry without reading the documents.

A long-lived process (the service, with ``remember``) also keeps in memory the documents of the files of its
last load, by the same keys, so that after an edit only the edited file is parsed or read back.

Each document of a set loaded here gets a stamp (``ManifestSet.stamps``): its file's key and its place in the
file. Two loads that give a document the same stamp read it from the same text, so a kept plan trace can tell the
edited manifests from the others without comparing them (``controller.kept_traces``).

Every key also holds a digest of nebctl's own schema code, of the library versions and of the ``Limits``, so an
entry written by another version, or under other limits, is never found; the entries of each version of that code
sit in a subdirectory of their own, and the first entry another version writes deletes it (``Entries``). Each entry
carries its length and a CRC of its content (``framed``): an entry that is truncated, corrupt or unreadable is
ignored (and written again).
Only a set without any problem is ever kept: whenever anything is wrong, the uncached loader runs and reports it,
so every diagnostic is the loader's own. Deleting the directory at any time is safe.

The entries are pickles. They are read only from the state directory, which is as trusted as the database next
to it (whoever can write either can change what nebctl does).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import sys
import tempfile
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import TypeVar

from nebctl.core.keys import ResourceKey
from nebctl.schemas.checking import LoadedDocument
from nebctl.schemas.diagnostics import SourceLocation
from nebctl.schemas.digests import computed_digest
from nebctl.schemas.digests import remember as remember_digests
from nebctl.schemas.digests import remember_more as remember_more_digests
from nebctl.schemas.loading import (
    DEFAULT_LIMITS,
    Limits,
    ManifestSet,
    cross_document_problems,
    expand_paths,
    file_documents,
    load_paths,
)
from nebctl.schemas.models import AnyManifest, PlacementInputs, VirtualMachine, placement_inputs
from nebctl.schemas.reading import fast
from nebctl.schemas.reading.sources import read_file
from nebctl.schemas.references import Reference
from nebctl.schemas.validation import (
    crossing,
    own_problems,
    references_known,
    references_of,
    remember_references,
)

Read = TypeVar("Read")
_MAGIC = b"nebctl-manifest-cache 2\n"
# The checked documents of each file of this process's last load with ``remember``, by entry key: a service
# loads the same set again after each edit, and its unchanged files need not even be read back from the
# directory. Only the last load's files are kept (the documents are immutable; its snapshot holds them anyway).
_LAST_LOAD: list[dict[str, _File]] = [{}]
_DIGEST = hashlib.sha256().digest_size  # of a key; an entry's file is named by its hex digits
_HEADER = len(_MAGIC) + 12  # then the payload's length (8 bytes) and its CRC-32 (4)


def framed(payload: bytes) -> bytes:
    """An entry's bytes: a header saying what the file is, the payload's length and CRC-32, then ``payload``.
    A CRC, not a cryptographic digest: it tells a file truncated, cut short or damaged from a whole one, as any
    digest would, at a fifth of a SHA-256's time (a kept trace of 10,000 VMs is 14 MB, read by every diff). Who
    can write the directory can write a pickle anyway."""
    return _header(payload) + payload


def _header(payload: bytes) -> bytes:
    """What ``framed`` puts before ``payload``: written apart, a large payload is not copied once more."""
    return _MAGIC + len(payload).to_bytes(8, "little") + zlib.crc32(payload).to_bytes(4, "little")


def unframed(data: bytes) -> memoryview | None:
    """The payload of an entry's bytes (``framed``); None when they are not a whole entry of this format."""
    if not data.startswith(_MAGIC) or len(data) < _HEADER:
        return None
    length = int.from_bytes(data[len(_MAGIC) : len(_MAGIC) + 8], "little")
    payload = memoryview(data)[_HEADER:]
    if len(payload) != length or zlib.crc32(payload) != int.from_bytes(data[_HEADER - 4 : _HEADER], "little"):
        return None
    return payload


# Entries kept beyond those of the set just loaded: the older ones (by last use) are deleted past this many.
MAX_ENTRIES = 4096
# Edited files past this many: the whole set is checked again rather than each file against its last entry.
EDITED_FILES = 16


def load_paths_cached(
    paths: Sequence[str | os.PathLike[str]],
    directory: Path,
    *,
    limits: Limits = DEFAULT_LIMITS,
    remember: bool = False,
) -> ManifestSet:
    """``load_paths(paths, limits=limits)``, with the files' checked documents kept in ``directory``; with
    ``remember`` (a process that loads the same set again and again), also in memory until the next such load."""
    files, diagnostics = expand_paths(paths)
    if diagnostics:
        return load_paths(paths, limits=limits)
    texts = _texts(files, limits)
    if texts is None:
        return load_paths(paths, limits=limits)  # it reports the file that cannot be read
    store = Entries(directory / "manifests", _version_tag(limits), version=_code_digest())
    scalars: fast.Scalars | None = None
    keys: list[str] = []
    stamps: dict[ResourceKey, str] = {}
    recent: dict[str, _File] = _LAST_LOAD[0] if remember else {}
    loaded: dict[str, _File] = {}
    fresh: list[tuple[LoadedDocument, list[Reference]]] = []  # the references of the files checked now
    hits: list[_File] = []  # the files found checked
    for file, text in texts:
        key = store.key(b"file", file.encode("utf-8", "surrogatepass"), text.encode("utf-8", "surrogatepass"))
        keys.append(key)
        found: object = recent.get(key)
        if found is None:
            found = store.get(key)
        if not (isinstance(found, _File) and found.whole()):
            if scalars is None:
                scalars = fast.Scalars()
            checked = file_documents(file, text, limits, scalars)
            if checked is None:
                return load_paths(paths, limits=limits)  # it reports the problems
            # Positions serve diagnostics only, and a set with a problem is loaded again without the cache.
            kept = [LoadedDocument(d.key, d.manifest, d.location, {}, {}) for d in checked]
            references = [references_of(d.key, d.manifest) for d in kept]
            found = _File.of(kept, tuple(computed_digest(d.manifest) for d in kept), pickle.dumps(references))
            store.put(key, found)
            fresh.extend(zip(kept, references, strict=True))
        else:
            hits.append(found)
        loaded[key] = found
        for index, document_key in enumerate(found.keys):
            stamps[document_key] = f"{key}:{index}"  # the file's name and text, nebctl's schema code, the place
    entries = [loaded[key] for key in keys]
    markers = _checked_set(store, files, keys=keys, loaded=loaded, entries=entries, fresh=fresh, hits=hits)
    if markers is None:
        return load_paths(paths, limits=limits)  # it reports the problems
    store.prune({*keys, *markers})
    if remember:
        _LAST_LOAD[0] = loaded
    # The digests of the documents read already (checked now, or kept in memory); the others' as they are read.
    remember_digests(pair for entry in entries for pair in entry.read_digests())
    documents = CachedDocuments(entries)
    return ManifestSet(documents, documents.locations(), tuple(files), stamps)


def _texts(files: Sequence[str], limits: Limits) -> list[tuple[str, str]] | None:
    """Each file's name and text; None when one cannot be read."""
    texts: list[tuple[str, str]] = []
    for file in files:
        text, problem = read_file(file, limits)
        if problem is not None or text is None:
            return None
        texts.append((file, text))
    return texts


class _File:
    """A file's checked documents, kept pickled until one is read (a plan made from a kept trace reads those of the
    few edited files), with their keys, each one's digest as applied (``schemas.digests``), the distinct placement
    requirements of its VMs, and, pickled, the references each makes (``schemas.validation.references_of``) and
    what placing each VM reads (``models.placement_inputs``, by place in the file). The references are read back
    only when a set must be checked across documents again, so a load that finds its set checked does not pay for
    them; the placement inputs when every VM is placed again, which then reads no VM."""

    __slots__ = ("_read", "digests", "documents_pickled", "keys", "placing", "references", "requirements")

    def __init__(
        self,
        keys: tuple[ResourceKey, ...],
        documents_pickled: bytes,
        digests: tuple[bytes, ...],
        references: bytes,
        requirements: frozenset[str],
        *,
        placing: bytes,
    ) -> None:
        self.keys = keys
        self.documents_pickled = documents_pickled
        self.digests = digests
        self.references = references
        self.requirements = requirements
        self.placing = placing
        self._read: list[LoadedDocument] | None = None

    @classmethod
    def of(cls, documents: list[LoadedDocument], digests: tuple[bytes, ...], references: bytes) -> _File:
        """The entry of a file just checked, whose documents are these very objects."""
        made = cls(
            tuple(document.key for document in documents),
            pickle.dumps(documents, protocol=pickle.HIGHEST_PROTOCOL),
            digests,
            references,
            frozenset(
                document.manifest.spec.placement.requirements
                for document in documents
                if isinstance(document.manifest, VirtualMachine) and document.manifest.spec.placement.requirements
            ),
            placing=pickle.dumps(_placing(documents), protocol=pickle.HIGHEST_PROTOCOL),
        )
        made._read = documents
        return made

    def __getstate__(self) -> tuple[object, ...]:
        return (self.keys, self.documents_pickled, self.digests, self.references, self.requirements, self.placing)

    def __setstate__(self, state: tuple[object, ...]) -> None:
        (self.keys, self.documents_pickled, self.digests, self.references, self.requirements, self.placing) = state  # type: ignore[assignment]
        self._read = None

    def whole(self) -> bool:
        """Whether there is a key and a digest for each document and the rest is there (an entry is a pickle: trust
        its shape no more than that)."""
        return (
            isinstance(self.keys, tuple)
            and len(self.digests) == len(self.keys)
            and isinstance(self.documents_pickled, bytes)
            and isinstance(self.references, bytes)
            and isinstance(self.requirements, frozenset)
            and isinstance(self.placing, bytes)
        )

    def documents(self) -> list[LoadedDocument]:
        """The checked documents, read back the first time (then the same objects, whose digests ``document_digest``
        then knows)."""
        if self._read is None:
            read = pickle.loads(self.documents_pickled)  # the entry's digest covered these bytes
            if not (isinstance(read, list) and [document.key for document in read] == list(self.keys)):
                raise ValueError("a manifest cache entry whose documents are not its keys'")
            self._read = read
            remember_more_digests(zip((document.manifest for document in read), self.digests, strict=True))
        return self._read

    def placement_inputs(self) -> list[tuple[int, PlacementInputs]]:
        """What placing each VM of the file reads of it, by its place in the file: from its documents when they were
        read, else read back from the entry."""
        if self._read is not None:
            return _placing(self._read)
        read = pickle.loads(self.placing)  # the entry's digest covered these bytes
        count = len(self.keys)
        if not (isinstance(read, list) and all(isinstance(place, int) and 0 <= place < count for place, _ in read)):
            raise ValueError("a manifest cache entry whose placement inputs are not its documents'")
        return read

    def read_digests(self) -> list[tuple[AnyManifest, bytes]]:
        """Each document read back so far with its digest (none when they were not read)."""
        if self._read is None:
            return []
        return [(document.manifest, digest) for document, digest in zip(self._read, self.digests, strict=True)]


def _placing(documents: Sequence[LoadedDocument]) -> list[tuple[int, PlacementInputs]]:
    """What placing each VM of ``documents`` reads of it, with its place among them."""
    return [
        (place, placement_inputs(document.manifest))
        for place, document in enumerate(documents)
        if isinstance(document.manifest, VirtualMachine)
    ]


class _ByKey(Mapping[ResourceKey, Read]):
    """What ``pick`` reads of each document of some files' entries, by key in load order: each file's documents are
    read back from its entry when one of them is first asked for."""

    def __init__(self, places: Mapping[ResourceKey, tuple[_File, int]], pick: Callable[[LoadedDocument], Read]) -> None:
        self._places = places
        self._pick = pick

    def __getitem__(self, key: ResourceKey) -> Read:
        entry, index = self._places[key]
        return self._pick(entry.documents()[index])

    def __contains__(self, key: object) -> bool:
        return key in self._places

    def __iter__(self) -> Iterator[ResourceKey]:
        return iter(self._places)

    def __len__(self) -> int:
        return len(self._places)


class CachedDocuments(_ByKey[AnyManifest]):
    """The documents of a set loaded through the cache (``_ByKey``). What every VM's placement requirements are is
    told without reading any (``requirements``)."""

    def __init__(self, entries: Sequence[_File]) -> None:
        super().__init__(
            {key: (entry, index) for entry in entries for index, key in enumerate(entry.keys)},
            lambda document: document.manifest,
        )
        self._entries = entries

    def digest(self, key: ResourceKey) -> bytes:
        """The document's digest as applied (``digests.computed_digest``'s), kept in its file's entry."""
        entry, index = self._places[key]
        return entry.digests[index]

    def requirements(self) -> frozenset[str]:
        """The distinct placement requirements of the set's VMs."""
        return frozenset().union(*(entry.requirements for entry in self._entries))

    def placement_inputs(self) -> dict[ResourceKey, PlacementInputs]:
        """What placing each VM of the set reads of it (``models.placement_inputs``), by key in load order, without
        reading the VMs back."""
        return {entry.keys[place]: inputs for entry in self._entries for place, inputs in entry.placement_inputs()}

    def locations(self) -> Mapping[ResourceKey, SourceLocation]:
        """Where each document was found, read back as the documents are."""
        return _ByKey(self._places, lambda document: document.location)


def _checked_set(
    store: Entries,
    files: Sequence[str],
    *,
    keys: list[str],
    loaded: dict[str, _File],
    entries: list[_File],
    fresh: list[tuple[LoadedDocument, list[Reference]]],
    hits: list[_File],
) -> tuple[str, str] | None:
    """Check the set of ``files`` (whose entries are ``keys``, ``loaded``) across documents, unless it passed
    before or passes as an edit of the last set of them that did (``_passes_as_edited``): the keys of the entries
    that say so, or None when it has a problem."""
    set_key = store.key(b"set", *(key.encode() for key in keys))
    last_key = store.key(b"last-set", *(file.encode("utf-8", "surrogatepass") for file in files))
    if store.get(set_key) is not True:
        if not _passes_as_edited(store, store.get(last_key), keys, loaded):
            _remember_references(fresh, hits)
            if cross_document_problems([document for entry in entries for document in entry.documents()]):
                return None
        store.put(set_key, True)
        store.put(last_key, tuple(keys))
    return set_key, last_key


def _passes_as_edited(store: Entries, last: object, keys: list[str], loaded: dict[str, _File]) -> bool:
    """Whether the set whose files have the entries ``keys`` (``loaded``) passes the checks across documents
    because ``last``, the entries of the same files when they last passed, differ only in files whose documents
    pass their own checks and read to the checks across documents as they did (``validation.crossing``: the same
    keys, reference targets, static addresses and networks). Reading those few files' old entries spares checking
    the whole set again after an edit: a tenth of a second at 10,000 documents. False when it cannot tell (an old
    entry pruned, files added or removed, many edited): the whole check then runs."""
    if not isinstance(last, tuple) or len(last) != len(keys):
        return False
    edited = [index for index, (before, now) in enumerate(zip(last, keys, strict=True)) if before != now]
    if not edited or len(edited) > EDITED_FILES:
        return False
    for index in edited:
        before, now = store.get(last[index]), loaded[keys[index]]
        if not isinstance(before, _File) or not before.whole():
            return False
        crossed = _crossings(before)
        if crossed is None or crossed != _crossings(now):
            return False
        if any(own_problems(document) for document in now.documents()):
            return False
    return True


def _crossings(entry: _File) -> list[tuple[object, ...]] | None:
    """What the checks across documents read of each document of a file's entry; None when its references do not
    read back as one list per document."""
    references = pickle.loads(entry.references)  # the entry's digest covered these bytes
    documents = entry.documents()
    if not isinstance(references, list) or len(references) != len(documents):
        return None
    return [
        crossing(document.key, document.manifest, read) for document, read in zip(documents, references, strict=True)
    ]


def _remember_references(fresh: list[tuple[LoadedDocument, list[Reference]]], hits: list[_File]) -> None:
    """Hand the checks across documents the references of every document of the set: those just read, and those
    kept with the files found checked (but for the documents it read them of in this process's last check: the
    same objects, in a process that loads again and again). A document whose references are not handed over is
    read by the check itself, so this only ever spares work."""
    known: list[tuple[LoadedDocument, list[Reference]]] = list(fresh)
    for entry in hits:
        documents = entry.documents()
        if documents and references_known(documents[0].manifest):
            continue  # this process checked these very documents last time, and still holds their references
        references = pickle.loads(entry.references)  # the entry's digest covered these bytes
        if isinstance(references, list) and len(references) == len(documents):
            known.extend(zip(documents, references, strict=True))
    remember_references((document.key, document.manifest, references) for document, references in known)


class Entries:
    """The entries of one cache directory, each a file named by its key: a header, the payload's length and CRC,
    the payload (a pickle; ``framed``). Reading never raises: anything wrong is a miss. Writing is atomic (a
    temporary file renamed) and a failure to write only costs the next run the time this one spent.

    ``tag`` goes into every key: a digest of nebctl's code and whatever else an entry is only valid for. The
    entries live in a subdirectory named by ``version`` (the code's digest alone; by default, ``tag``), and the
    first entry this object writes deletes the other subdirectories and the entries an older layout kept at the
    top: another version never finds them, so every upgrade would otherwise leave its caches behind, each as large
    as the stack's. Two versions used in turn on one directory only cost each other their caches."""

    def __init__(self, directory: Path, tag: bytes, *, version: bytes | None = None) -> None:
        self.root = directory
        self.directory = directory / hashlib.sha256(tag if version is None else version).hexdigest()[:16]
        self.tag = tag
        self.written = 0

    def path(self, key: str) -> Path:
        return self.directory / key

    def key(self, *parts: bytes) -> str:
        digest = hashlib.sha256(self.tag)
        for part in parts:
            digest.update(len(part).to_bytes(8, "little"))
            digest.update(part)
        return digest.hexdigest()

    def modified(self, key: str) -> float | None:
        """When the entry's file was last written (``time.time()``'s clock), or None when there is none."""
        try:
            return os.stat(self.directory / key).st_mtime
        except OSError:
            return None

    def get(self, key: str) -> object:
        try:
            with open(self.directory / key, "rb") as handle:
                data = handle.read()
        except OSError:
            return None
        payload = unframed(data)
        if payload is None:
            return None
        try:
            return pickle.loads(payload)
        except Exception:  # the digest matched yet the payload does not load: a class that moved, say
            return None

    def put(self, key: str, value: object) -> None:
        try:
            payload = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
            self.directory.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=self.directory, prefix=".tmp-")
            try:
                with os.fdopen(handle, "wb") as out:
                    out.write(_header(payload))
                    out.write(payload)
                os.replace(temporary, self.directory / key)
            except BaseException:
                os.unlink(temporary)
                raise
        except (OSError, pickle.PicklingError, TypeError, AttributeError):
            return
        if self.written == 0:
            self._forget_other_versions()
        self.written += 1

    def _forget_other_versions(self) -> None:
        """Delete what other versions kept beside this one's subdirectory: their subdirectories, and the entries
        of the older layout (files named by a key). Anything that fails to go stays; the next write tries again."""
        try:
            others = [entry for entry in os.scandir(self.root) if entry.path != str(self.directory)]
        except OSError:
            return
        for entry in others:
            try:
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
                elif len(entry.name) == 2 * _DIGEST and all(c in "0123456789abcdef" for c in entry.name):
                    os.unlink(entry.path)
            except OSError:
                continue

    def prune(self, keep: set[str]) -> None:
        """Delete the least recently written entries past ``MAX_ENTRIES``, never those in ``keep`` (the set just
        loaded); only after a run that wrote some, so a run served from the cache only reads."""
        if not self.written:
            return
        try:
            entries = [entry for entry in os.scandir(self.directory) if entry.is_file()]
            excess = len(entries) - max(MAX_ENTRIES, len(keep))
            if excess <= 0:
                return
            others = sorted((e for e in entries if e.name not in keep), key=lambda entry: entry.stat().st_mtime_ns)
            for entry in others[:excess]:
                os.unlink(entry.path)
        except OSError:
            return


@cache
def _code_digest() -> bytes:
    """A digest of the code that decides what a file's documents are: nebctl's schemas and core packages (read
    once per process), so an entry written by any other version of them is never found."""
    import pydantic_core
    import yaml  # type: ignore[import-untyped]

    import nebctl

    digest = hashlib.sha256()
    digest.update(f"{sys.version}\0{pydantic_core.__version__}\0{yaml.__version__}\0".encode())
    root = Path(nebctl.__file__).parent
    for package in ("schemas", "core"):
        for path in sorted((root / package).rglob("*.py")):
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return digest.digest()


def _version_tag(limits: Limits) -> bytes:
    return _code_digest() + repr(limits).encode()
