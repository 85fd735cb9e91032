"""Run directories: orbax array checkpoints, sharding records and the committed manifest.

Layout of a run directory::

    run.json              what the run is (fingerprint of model and settings), written once
    warmup/state, warmup/extra        orbax checkpoints after warmup
    warmup.json                       leaf names, shapes, dtypes and shardings of both
    batch_00000/{state,samples,stats}, batch_00000.json     one per batch
    manifest.json         {"warmup": true, "batches": n}: the commit point, written last

Orbax writes each checkpoint into `<name>.orbax-checkpoint-tmp` and renames it when complete
(`AtomicRenameTemporaryPath`), so a checkpoint directory is never half written; but a batch
is several checkpoints and a record. The manifest, replaced by `os.replace` (atomic on POSIX)
after everything it refers to is on disk, is what says which batches are complete: anything
newer is debris from an interrupted run and is removed before that batch is run again.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec, SingleDeviceSharding

__all__ = [
    "RunDirectory",
    "restore_tree",
    "save_tree",
    "sharding_from_record",
    "sharding_record",
    "sync_processes",
]

MANIFEST = "manifest.json"
RUN_INFO = "run.json"
_FORMAT = 1
_ORBAX_TMP = ".orbax-checkpoint-tmp"


def _is_main_process() -> bool:
    return jax.process_index() == 0


def sync_processes(tag: str) -> None:
    """Wait until every process gets here (multi-process runs only; `tag` names the point).

    Files are written by process 0 alone; the others wait here before reading them. Every
    process must call this at the same points in the same order.
    """
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(f"fmt_infer:{tag}")


def write_json_atomic(path: pathlib.Path, content: Any) -> None:
    """Write JSON to a temporary file, fsync it, then rename it over `path` (atomic).

    Process 0 writes; in a multi-process run every process calls this and returns once the
    file is in place.
    """
    if not _is_main_process():
        sync_processes(f"json:{path.name}")
        return
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        json.dump(content, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)  # make the rename itself durable
    finally:
        os.close(fd)
    sync_processes(f"json:{path.name}")


def read_json(path: pathlib.Path) -> Any:
    with open(path) as f:
        return json.load(f)


# --------------------------------------------------------------------------- shardings


def _spec_entry(entry: Any) -> Any:
    if entry is None or isinstance(entry, str):
        return entry
    return list(entry)


def sharding_record(sharding: Any) -> dict[str, Any]:
    """A JSON description of a concrete sharding from which it can be rebuilt exactly."""
    if isinstance(sharding, NamedSharding):
        mesh = sharding.mesh
        return {
            "type": "named",
            "mesh_shape": [int(n) for n in mesh.devices.shape],
            "axis_names": list(mesh.axis_names),
            "axis_types": [t.name for t in mesh.axis_types],
            "device_ids": [int(i) for i in mesh.device_ids.ravel()],
            "spec": [_spec_entry(e) for e in sharding.spec],
        }
    if isinstance(sharding, SingleDeviceSharding):
        device: Any  # jaxlib ships no type stub for Device
        (device,) = sharding.device_set
        return {"type": "single", "device_id": int(device.id)}
    raise TypeError(f"cannot record sharding of type {type(sharding).__name__}: {sharding!r}")


def sharding_from_record(record: dict[str, Any]) -> Any:
    """The sharding a record describes, or None when its devices are not all present."""
    by_id = {d.id: d for d in jax.devices()}
    if record["type"] == "single":
        device = by_id.get(record["device_id"])
        return None if device is None else SingleDeviceSharding(device)
    ids = record["device_ids"]
    if any(i not in by_id for i in ids):
        return None
    devices = np.array([by_id[i] for i in ids], dtype=object).reshape(record["mesh_shape"])
    axis_types = tuple(jax.sharding.AxisType[t] for t in record["axis_types"])
    mesh = Mesh(devices, tuple(record["axis_names"]), axis_types=axis_types)
    spec = PartitionSpec(*[tuple(e) if isinstance(e, list) else e for e in record["spec"]])
    return NamedSharding(mesh, spec)


# --------------------------------------------------------------------------- pytrees


def _leaf_name(i: int) -> str:
    return f"leaf_{i:05d}"


def _global_array(array: jax.Array) -> jax.Array:
    """In a multi-process run, a process-local array as one replicated over every device.

    Orbax saves only global arrays there. Small leaves such as RNG keys live on one local
    device of each process, with the same value on every process (all run the same
    program); they are stored, and restored, replicated on all devices.
    """
    if jax.process_count() == 1 or not array.is_fully_addressable:
        return array
    value = np.asarray(array)
    mesh = Mesh(np.array(jax.devices()), ("processes",))
    sharding = NamedSharding(mesh, PartitionSpec())
    return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])


def save_tree(directory: pathlib.Path, tree: Any) -> dict[str, Any]:
    """Save a pytree of arrays with orbax (atomic per directory); return its record.

    Leaves are stored under positional names, so any pytree node type round-trips when the
    caller supplies the tree structure again at restore time. The record (names, shapes,
    dtypes, shardings, and the keys of a flat dict) must be stored by the caller. In a
    multi-process run every process calls this with the same tree (orbax writes each
    process's shards).
    """
    with_path, _ = jax.tree_util.tree_flatten_with_path(tree)
    flat, leaves = {}, []
    for i, (key_path, leaf) in enumerate(with_path):
        array = leaf if isinstance(leaf, jax.Array) else jax.numpy.asarray(leaf)
        array = _global_array(array)
        flat[_leaf_name(i)] = array
        leaves.append(
            {
                "path": jax.tree_util.keystr(key_path),
                "shape": list(array.shape),
                "dtype": array.dtype.name,
                "sharding": sharding_record(array.sharding),
            }
        )
    if _is_main_process() and directory.exists():
        shutil.rmtree(directory)
    sync_processes(f"save:{directory.parent.name}/{directory.name}")
    with ocp.PyTreeCheckpointer() as checkpointer:
        checkpointer.save(directory.absolute(), args=ocp.args.PyTreeSave(flat))
    keys = list(tree) if isinstance(tree, dict) else None
    return {"leaves": leaves, "dict_keys": keys}


def restore_tree(
    directory: pathlib.Path,
    record: dict[str, Any],
    *,
    treedef: Any = None,
    select: list[str] | None = None,
) -> Any:
    """Restore what `save_tree` wrote, each array with the sharding it was saved with.

    Args:
        directory: the orbax checkpoint directory.
        record: the record `save_tree` returned.
        treedef: tree structure to rebuild; default: the flat dict `save_tree` was given.
        select: for a flat dict, the keys to restore (others are not read).

    Returns:
        The pytree; arrays are restored through `ArrayRestoreArgs` built from the recorded
        shardings (onto the default device where a recorded device is absent).
    """
    leaves = record["leaves"]
    indices = list(range(len(leaves)))
    if select is not None:
        keys = record["dict_keys"]
        indices = [keys.index(k) for k in select]
    item, restore_args = {}, {}
    for i in indices:
        leaf = leaves[i]
        sharding = sharding_from_record(leaf["sharding"])
        if sharding is None:
            sharding = SingleDeviceSharding(jax.devices()[0])
        shape, dtype = tuple(leaf["shape"]), np.dtype(leaf["dtype"])
        item[_leaf_name(i)] = jax.ShapeDtypeStruct(shape, dtype, sharding=sharding)
        restore_args[_leaf_name(i)] = ocp.ArrayRestoreArgs(
            sharding=sharding, global_shape=shape, dtype=dtype
        )
    with ocp.PyTreeCheckpointer() as checkpointer:
        flat = checkpointer.restore(
            directory.absolute(),
            args=ocp.args.PyTreeRestore(item=item, restore_args=restore_args, partial_restore=True)
            if select is not None
            else ocp.args.PyTreeRestore(item=item, restore_args=restore_args),
        )
    values = [flat[_leaf_name(i)] for i in indices]
    if treedef is not None:
        return jax.tree_util.tree_unflatten(treedef, values)
    keys = record["dict_keys"]
    return {keys[i]: v for i, v in zip(indices, values, strict=True)}


# --------------------------------------------------------------------------- run directory


class RunDirectory:
    """The files of one sampling run: fingerprint, checkpoints, manifest.

    Args:
        path: the run directory (created when needed).
    """

    def __init__(self, path: pathlib.Path):
        self.path = pathlib.Path(path)

    def exists(self) -> bool:
        return (self.path / RUN_INFO).exists()

    def run_info(self) -> dict[str, Any]:
        return read_json(self.path / RUN_INFO)

    def create(self, run_info: dict[str, Any]) -> None:
        # Looked at before anything is written, so that every process decides alike.
        has_manifest = (self.path / MANIFEST).exists()
        if _is_main_process():
            self.path.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.path / RUN_INFO, {"format": _FORMAT, **run_info})
        if not has_manifest:
            write_json_atomic(self.path / MANIFEST, {"warmup": False, "batches": 0})

    def manifest(self) -> dict[str, Any]:
        if not (self.path / MANIFEST).exists():
            return {"warmup": False, "batches": 0}
        return read_json(self.path / MANIFEST)

    def commit(self, *, warmup: bool, batches: int) -> None:
        write_json_atomic(self.path / MANIFEST, {"warmup": warmup, "batches": batches})

    @staticmethod
    def batch_name(index: int) -> str:
        return f"batch_{index:05d}"

    def remove_uncommitted(self) -> None:
        """Delete checkpoints the manifest does not vouch for (debris of a killed run).

        Process 0 deletes; in a multi-process run all processes call this and return when
        it is done.
        """
        if _is_main_process() and self.path.exists():
            self._remove_uncommitted()
        sync_processes("remove_uncommitted")

    def _remove_uncommitted(self) -> None:
        manifest = self.manifest()
        keep = {self.batch_name(b) for b in range(manifest["batches"])}
        if manifest["warmup"]:
            keep.add("warmup")
        for entry in self.path.iterdir():
            stem = entry.name.removesuffix(".json")
            is_ckpt = stem == "warmup" or stem.startswith("batch_")
            if _ORBAX_TMP in entry.name or entry.name.endswith(".tmp"):
                is_ckpt = True
                stem = ""
            if is_ckpt and stem not in keep:
                if entry.is_dir():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()

    def save(self, name: str, trees: dict[str, Any]) -> None:
        """Save named pytrees under `<name>/` and their records in `<name>.json`."""
        records = {}
        for key, tree in trees.items():
            records[key] = save_tree(self.path / name / key, tree)
        write_json_atomic(self.path / f"{name}.json", records)

    def records(self, name: str) -> dict[str, Any]:
        return read_json(self.path / f"{name}.json")

    def restore(
        self, name: str, key: str, *, treedef: Any = None, select: list[str] | None = None
    ) -> Any:
        record = self.records(name)[key]
        return restore_tree(self.path / name / key, record, treedef=treedef, select=select)
