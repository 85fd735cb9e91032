"""Start the multi-process check: N processes of `worker.py` on this machine.

    python launch.py --num-processes 2 --devices-per-process 2 --output-dir OUT [--interrupt]

Picks a free localhost port for the coordinator of `jax.distributed`, starts the processes,
each with its own fake CPU devices, prints their output prefixed with the process index,
and fails (exit status 1) when one of them fails or the timeout passes (every process is
then killed). With `--num-processes 1` it runs the single-process reference, without
`jax.distributed`. On a cluster, SLURM's `srun` plays this role (docs/tutorials/multi_host.md).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import socket
import subprocess
import sys
import threading
import time

WORKER = pathlib.Path(__file__).resolve().with_name("worker.py")


def free_port() -> int:
    """A TCP port on localhost that is free now (chosen by the OS)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


class ProcessGroup:
    """`num_processes` workers started together; `wait()` checks that all of them succeed.

    Args:
        num_processes: processes to start (1: the reference, without `jax.distributed`).
        devices_per_process: fake CPU devices of each process.
        output_dir: where the workers write checkpoints and process 0 its results.
        worker_args: extra arguments of every worker (e.g. `["--interrupt"]`).
        name: prefix of the printed output lines.

    Raises:
        ValueError: a count < 1.
    """

    def __init__(
        self,
        num_processes: int,
        devices_per_process: int,
        output_dir: pathlib.Path,
        *,
        worker_args: list[str] | None = None,
        name: str = "",
    ):
        for arg, value in (
            ("num_processes", num_processes),
            ("devices_per_process", devices_per_process),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{arg} must be an int >= 1, got {value!r}")
        self.output_dir = pathlib.Path(output_dir)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.lines: list[str] = []
        self.start_time = time.monotonic()
        env = {
            **os.environ,
            "JAX_PLATFORMS": "cpu",
            "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices_per_process}",
            "PYTHONUNBUFFERED": "1",
        }
        coordinator = f"localhost:{free_port()}"
        self.procs: list[subprocess.Popen] = []
        self.threads: list[threading.Thread] = []
        for rank in range(num_processes):
            cmd = [sys.executable, str(WORKER), "--output-dir", str(self.output_dir)]
            cmd += list(worker_args or [])
            if num_processes > 1:
                cmd += ["--num-processes", str(num_processes), "--process-id", str(rank)]
                cmd += ["--coordinator", coordinator]
            proc = subprocess.Popen(
                cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
            thread = threading.Thread(target=self._pump, args=(proc.stdout, f"{name}[{rank}] "))
            thread.start()
            self.procs.append(proc)
            self.threads.append(thread)

    def _pump(self, stream, prefix: str) -> None:
        for line in stream:
            if "[Gloo]" in line:  # one line per connection between processes
                continue
            self.lines.append(prefix + line)
            sys.stdout.write(prefix + line)
            sys.stdout.flush()

    def wait(self, timeout: float) -> float:
        """Wait for every process; return the wall time since the start, in seconds.

        Raises:
            RuntimeError: a process exited with a non-zero status or the timeout passed
                (the message names it and holds the last lines of output).
        """
        deadline = self.start_time + timeout
        failure = None
        try:
            # Poll all: when one process fails the others wait for it at their next
            # collective, so stop at the first failure instead of waiting for them.
            while True:
                codes = [proc.poll() for proc in self.procs]
                failed = [(rank, c) for rank, c in enumerate(codes) if c not in (None, 0)]
                if failed:
                    failure = f"process {failed[0][0]} exited with status {failed[0][1]}"
                    break
                if all(c == 0 for c in codes):
                    break
                if time.monotonic() > deadline:
                    failure = f"processes still running after {timeout:.0f} s"
                    break
                time.sleep(0.2)
        finally:
            for proc in self.procs:
                if proc.poll() is None:
                    proc.kill()
                proc.wait()
            for thread in self.threads:
                thread.join()
        if failure is not None:
            tail = "".join(self.lines[-80:])
            raise RuntimeError(f"{failure}. Last output:\n{tail}")
        return time.monotonic() - self.start_time


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num-processes", type=int, default=2)
    parser.add_argument("--devices-per-process", type=int, default=2)
    parser.add_argument("--output-dir", type=pathlib.Path, required=True)
    parser.add_argument("--interrupt", action="store_true", help="passed to the workers")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds")
    args = parser.parse_args(argv)
    group = ProcessGroup(
        args.num_processes,
        args.devices_per_process,
        args.output_dir,
        worker_args=["--interrupt"] if args.interrupt else [],
    )
    try:
        seconds = group.wait(args.timeout)
    except RuntimeError as err:
        print(f"FAILED: {err}", file=sys.stderr)
        return 1
    print(f"OK: {args.num_processes} processes finished in {seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
