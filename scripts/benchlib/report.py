"""The benchmark's printed report (`report`) from its results dict (the one `--json` writes), and
the lines that say which targets were met (`targets`): runner within 10% of the minimal loop on
(a) and (b), the stacked sweep's speed-up on (c), the CLI commands under 1 s without a heavy
import, the run's fixed cost, (d)'s targets on MNIST, (e)'s on SLURM, the stacked search's
speed-up (f), images kept as uint8.
"""

from __future__ import annotations

import statistics
from typing import Any

from .loops import VARIANTS
from .regularizers import REG_TARGETS
from .search import ONE, STACKED, TARGET as SEARCH_TARGET
from .stacking import STACK_TARGETS, WORKLOAD_C
from .startup import HEAVY


def fmt_table(rows: list[list[str]], header: list[str]) -> str:
    """A plain-text table: the first column left-aligned, the others right-aligned."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def sharing(m: dict[str, float]) -> str:
    """One phrase on the CPU time other processes used (a CpuWatch's `foreign()`), flagged above 3%."""
    flag = "  <- the machine was shared: rerun when it is idle" if m["other_cpu_share"] > 0.03 else ""
    return (f"{m['other_cpu_s']:.1f} CPU-s in {m['wall_s']:.0f} s ({100 * m['other_cpu_share']:.1f}% of the cores), "
            f"steal {m['steal_s']:.1f} s{flag}")


def regularizer_table(d: dict[str, Any]) -> list[str]:
    """(d)'s lines of the report: every row's ratio (and epoch time) per workload."""
    tables = d["workloads"]
    names = list(tables)
    rows = [[label, tables[names[0]][label]["baseline"],
             *[f"{tables[n][label]['ratio']:.2f}x ({tables[n][label]['epoch_seconds'] * 1000:.0f} ms)" for n in names]]
            for label in tables[names[0]]]
    return ["", "(d) what each regularizer costs: the runner's median epoch time (training + evaluation) with it over "
            f"its baseline's; epochs {d['epochs']}, {d['repeats']} interleaved repeats, medians",
            f"other processes during (d): {sharing(d['machine_sharing'])}",
            fmt_table(rows, ["regularizer", "baseline", *names])]


def search_table(f: dict[str, Any]) -> list[str]:
    """(f)'s lines of the report: each variant's wall time, per trial, and the ratios."""
    epochs = f"at most {f['max_epochs']} epochs a trial" if f["max_epochs"] else "the config's epochs"
    rows = [[v, f["variants"][v], f"{f[v]['wall_seconds']:.1f} s", f"{f[v]['min']:.1f}..{f[v]['max']:.1f}",
             f"{f[v]['per_trial_seconds']:.2f} s", str(f["epochs_run"][v])] for v in f["variants"]]
    out = ["", f"(f) a search of {f['trials']} trials from the shell ({epochs}, early stopping), {f['repeats']} "
               f"repeat(s) each, interleaved, fresh sweep folders; medians: {f['command']}",
           f"other processes during (f): {sharing(f['machine_sharing'])}",
           fmt_table(rows, ["trials asked", "options", "wall", "min..max", "per trial", "epochs (all trials)"]),
           f"stacked search, {f['batch']} trials a batch, against one trial at a time: {f['speedup']:.2f}x "
           "(ratio of the medians); per repeat " + ", ".join(f"{x:.2f}x" for x in f["speedup_per_repeat"])]
    if all("other_cpu_share" in f[v] for v in f["variants"]):
        shared = any(x > 0.03 for v in f["variants"] for x in f[v]["other_cpu_share"])
        out.append("other processes' share of the cores during each command, by repeat: " + "; ".join(
            f"{v} " + ", ".join(f"{100 * x:.0f}%" for x in f[v]["other_cpu_share"]) for v in f["variants"])
            + ("  <- shared: compare the quiet repeats" if shared else ""))
    if "speedup_vs_basic" in f:
        out.append(f"against one trial at a time on the basic launcher: {f['speedup_vs_basic']:.2f}x")
    out.append(f"every run's study (optuna.db) holds the same {f['trials']} trials with the same parameters; the "
               f"trials' values differ by at most {f['trial_value_max_abs_diff']:.2g} between runs")
    return out


def conditions(w: dict[str, Any]) -> list[str]:
    """Two lines on how the machine behaved during one workload: other processes, speed drift."""
    pr = w["speed_probe_gflops"]
    drift = max(pr) / min(pr) - 1
    return [f"other processes during this workload: {sharing(w['machine_sharing'])}",
            "machine speed before each repeat (1024x1024 matmul, GFLOP/s): " + ", ".join(f"{x:.0f}" for x in pr)
            + (f"  <- varied by {100 * drift:.0f}%: timings are noisy, rerun" if drift > 0.1 else "")]


def report(res: dict[str, Any]) -> str:
    """The printed report: the machine, then each part measured, then the targets."""
    out = []
    env = res["environment"]
    out.append(f"regbench benchmark ({'QUICK SMOKE MODE: not for reporting' if res['quick'] else 'full'})")
    out.append(f"machine: {env['cpus']} CPUs ({env['processor']}), torch {env['torch']} on {env['device']}, "
               f"{env['threads']} threads, python {env['python']}")
    out.append(f"load average before / after: {env['loadavg_before']} / {env['loadavg_after']}; "
               f"total benchmark time {res['total_seconds']:.0f} s")
    out.append(f"other processes on this machine during the benchmark: {sharing(res['machine_sharing'])}")
    peak = max(res["matmul_peak_gflops"])
    out.append("matmul peak (2048x2048 float32, median of 20, before (a) / after (b)): "
               + " / ".join(f"{g:.1f}" for g in res["matmul_peak_gflops"]) + f" GFLOP/s -> peak {peak:.1f}")
    for key, title in (("a", "(a) digits, MLP 64-256-128-10, batch 64, reg=l2"),
                       ("b", "(b) MNIST, MLP 784-512-512-10, batch 128, reg=l2")):
        w = res.get(key)
        if w is None:
            continue
        out.append("")
        out.append(f"{title}: {w['n_train']} train / {w['n_val']} val samples, "
                   f"{w['epochs']} epochs x {w['repeats']} repeats, interleaved; medians over repeats")
        out += conditions(w)
        header = ["loop", "epochs/s", "min..max", "vs minimal", "final val loss", "val acc"]
        if key == "b":
            header += ["GFLOP/s", "% of peak"]
        rows = []
        for v in VARIANTS:
            r = w[v]
            row = [v, f"{r['epochs_per_s']:.3f}", f"{r['min']:.3f}..{r['max']:.3f}",
                   f"{r['epochs_per_s'] / w['minimal']['epochs_per_s']:.3f}",
                   f"{r['final_val_loss']:.4f}", f"{r['final_val_acc']:.4f}"]
            if key == "b":
                g = r["epochs_per_s"] * w["flops_per_epoch"] / 1e9
                row += [f"{g:.1f}", f"{100 * g / peak:.0f}%"]
            rows.append(row)
        out.append(fmt_table(rows, header))
        rr = w["runner"]
        for v in ("runner", "reference"):
            per = w[f"{v}/minimal_per_repeat"]
            out.append(f"{v}/minimal: {w[f'{v}/minimal']:.3f} (ratio of the medians); paired within each repeat: "
                       f"median {statistics.median(per):.3f}, per repeat " + ", ".join(f"{x:.3f}" for x in per))
        out.append(f"runner whole-run wall {rr['wall_seconds']:.2f} s for {w['epochs']} epochs, of which "
                   f"{rr['wall_minus_epochs_seconds']:.2f} s outside the epochs' `seconds` (data loading took "
                   f"{w['data_load_seconds']:.2f} s when loaded by the benchmark)")
        if "marginal_wall_epochs_per_s" in rr:
            out.append(f"runner marginal wall-clock epoch, (wall({w['epochs']}) - wall(1)) / {w['epochs'] - 1}: "
                       f"{rr['marginal_wall_epochs_per_s']:.3f} epochs/s = {w['runner_marginal_wall/minimal']:.3f} x minimal "
                       f"(includes metrics.csv, progress bar and the last.pt checkpoint of every epoch)")
        d = w["minimal_equals_runner_max_abs_diff"]
        out.append(f"minimal loop reproduces the runner's per-epoch metrics: "
                   f"{'yes, bit for bit' if d == 0 else f'max abs difference {d:.3g}'}")
        if key == "b":
            out.append(f"matmul work per epoch: {w['flops_per_epoch'] / 1e9:.1f} GFLOP "
                       f"(training steps on {w['n_train']} samples + eval of train and val); "
                       f"images stored as {w['x_dtype']}, {w['image_bytes_uint8'] / 2**20:.1f} MiB "
                       f"(float32 would be {4 * w['image_bytes_uint8'] / 2**20:.1f} MiB)")
    if "c" in res:
        c = res["c"]
        out.append("")
        out.append(f"(c) stacked sweep: {c['jobs']} jobs of `regbench run -m {' '.join(WORKLOAD_C)} reg.alpha=...` "
                   f"(alphas {', '.join(f'{a:g}' for a in c['alphas'])}; early stopping, patience {c['patience']}, "
                   f"at most {c['max_epochs']} epochs), in-process, {c['repeats']} repeats interleaved; medians")
        out += conditions(c)
        rows = [[v, f"{c[v]['wall_seconds']:.2f} s", f"{c[v]['min']:.2f}..{c[v]['max']:.2f}",
                 str(sum(c["epochs_run"][v])), f"{sum(c['epochs_run'][v]) / c[v]['wall_seconds']:.1f}"]
                for v in ("sequential", "stacked")]
        out.append(fmt_table(rows, ["jobs run", "sweep wall", "min..max", "epochs (all jobs)", "job-epochs/s"]))
        out.append(f"stacked speed-up: {c['speedup']:.2f}x (ratio of the medians); per repeat "
                   + ", ".join(f"{x:.2f}x" for x in c["speedup_per_repeat"]))
        d = c["stacked_vs_sequential_max_abs_diff"]
        out.append(f"stacked vs one by one, largest difference over the jobs: val_loss {d['val_loss']:.2g}, "
                   f"val_acc {d['val_acc']:.2g}, test_acc {d['test_acc']:.2g}; epochs run "
                   f"{'the same for every job' if c['same_epochs_run'] else 'differ: ' + str(c['epochs_run'])}")
    if "c_sizes" in res:
        cz = res["c_sizes"]
        out.append("")
        out.append(f"(c) by stack size: k jobs of {cz['epochs']} epochs each (no early stopping), one by one vs one stack; "
                   f"medians of {cz['repeats']} interleaved repeats")
        rows = [[str(k), f"{v['lone_seconds']:.2f} s", f"{v['stacked_seconds']:.2f} s", f"{v['speedup']:.2f}x"]
                for k, v in cz["sizes"].items()]
        out.append(fmt_table(rows, ["jobs", "one by one", "stacked", "speed-up"]))
    if "cli_sweep" in res:
        cs = res["cli_sweep"]
        out.append("")
        out.append(f"(c) from the shell, {cs['repeats']} repeat(s) each, interleaved (start-up, composition, folders and "
                   f"the sweep report included): {cs['command']}")
        rows = [[v, f"{cs[v]['wall_seconds']:.1f} s", f"{cs[v]['min']:.1f}..{cs[v]['max']:.1f}"]
                for v in ("basic launcher", "hydra/launcher=stacked")]
        out.append(fmt_table(rows, ["launcher", "wall", "min..max"]))
        out.append(f"stacked speed-up from the shell: {cs['speedup']:.2f}x")
    if "cluster" in res:
        e = res["cluster"]
        out.append("")
        if "skipped" in e:
            out.append(f"(e) a sweep on SLURM: skipped ({e['skipped']})")
        else:
            out.append(f"(e) a 32-job sweep on SLURM from the shell, {e['repeats']} repeat(s) each, interleaved: {e['command']}")
            rows = [[v, e["variants"][v], f"{e[v]['wall_seconds']:.1f} s", f"{e[v]['min']:.1f}..{e[v]['max']:.1f}"]
                    for v in e["variants"]]
            out.append(fmt_table(rows, ["variant", "launcher options", "wall", "min..max"]))
            out.append(f"stacks as elements: {e['elements_vs_per_job']:.2f}x faster than one element per job; "
                       f"{e['elements_vs_inprocess']:.2f}x the in-process stacked wall time")
    if "search" in res:
        out += search_table(res["search"])
    if "memory" in res:
        m = res["memory"]
        out.append("")
        out.append(f"peak memory (peak RSS, VmHWM, of fresh subprocesses; workload (b), {res['memory_epochs']} epoch(s)):")
        out.append(fmt_table([
            ["imports only (torch, regbench.engine.runner)", f"{m['imports']['peak_kib'] / 1024:.0f} MiB", "-"],
            ["+ import torchvision.datasets", f"{m['torchvision']['peak_kib'] / 1024:.0f} MiB", "-"],
            ["+ regbench.data.datasets.load(mnist)", f"{m['load']['peak_kib'] / 1024:.0f} MiB", f"{m['load']['seconds']:.2f} s"],
            ["+ runner.run (load, train, evaluate)", f"{m['run']['peak_kib'] / 1024:.0f} MiB", f"{m['run']['seconds']:.2f} s"],
        ], ["process", "peak RSS", "time"]))
        mib = lambda k: k / 1024
        line = (f"peak RSS of run (b): {mib(m['run']['peak_kib']):.0f} MiB, {mib(m['run']['peak_kib'] - m['imports']['peak_kib']):.0f} MiB "
                f"above the imports, of which importing torchvision {mib(m['torchvision']['peak_kib'] - m['imports']['peak_kib']):.0f} MiB; "
                f"loading alone peaks at {mib(m['load']['peak_kib']):.0f} MiB")
        if "b" in res:
            line += f"; the uint8 images are {res['b']['image_bytes_uint8'] / 2**20:.1f} MiB"
        out.append(line)
    if "cli" in res:
        out.append("")
        out.append(f"CLI start-up (subprocess wall time, {res['cli_repeats']} runs each, median; target < 1 s):")
        rows = [[k, f"{v['median_s']:.3f} s", f"{v['min_s']:.3f}..{v['max_s']:.3f}"]
                for k, v in res["cli"].items() if not k.startswith("imports")]
        out.append(fmt_table(rows, ["command", "median", "min..max"]))
        for k, v in res["cli"].items():
            if k.startswith("imports"):
                out.append(f"{k}: heavy modules imported: {', '.join(v) or 'none'}")
    if "cli_run" in res:
        r = res["cli_run"]
        out.append(f"`{r['command']}` (the embedded default, digits) from the shell, {r['runs']} runs: median "
                   f"{r['median_s']:.2f} s ({r['min_s']:.2f}..{r['max_s']:.2f}), of which {r['result_seconds_median']:.2f} s "
                   f"inside the run (result.json's `seconds`) and {r['median_s'] - r['result_seconds_median']:.2f} s "
                   f"start-up and exit; the run's fixed cost (its `seconds` minus its epochs' `seconds`: data, model, "
                   f"files) {r['fixed_seconds_median']:.3f} s (target < 0.3 s)")
    if "d" in res:
        out += regularizer_table(res["d"])
    out.append("")
    out.append("targets:")
    for line in res["targets"]:
        out.append(f"  {line}")
    return "\n".join(out)


def targets(res: dict[str, Any]) -> list[str]:
    """One `[met]`, `[MISSED]` or `[n/a]` line per target that the parts measured can judge."""
    lines = []
    for key in ("a", "b"):
        if key in res:
            ratio = res[key]["runner/minimal"]
            lines.append(f"[{'met' if ratio >= 1 / 1.1 else 'MISSED'}] ({key}) runner within 10% of the minimal loop: "
                         f"runner/minimal {ratio:.4f} in epochs/s (needs >= {1 / 1.1:.4f})")
            if "runner_marginal_wall/minimal" in res[key]:
                r2 = res[key]["runner_marginal_wall/minimal"]
                lines.append(f"[{'met' if r2 >= 1 / 1.1 else 'MISSED'}] ({key}) same, counting the runner's whole wall-clock "
                             f"epoch (checkpoint and CSV included): {r2:.4f}")
    if "cli" in res:
        for label, v in res["cli"].items():
            if label.startswith("imports"):
                lines.append(f"[{'met' if not v else 'MISSED'}] {label[len('imports: '):]} imports none of "
                             f"{', '.join(HEAVY)} (imported: {', '.join(v) or 'none'})")
            else:
                lines.append(f"[{'met' if v['median_s'] < 1.0 else 'MISSED'}] {label} under 1 s: {v['median_s']:.3f} s")
    if "c" in res:
        c = res["c"]
        need = STACK_TARGETS.get(res["environment"]["device"].split(":")[0])
        if need and c["jobs"] == need[0]:
            lines.append(f"[{'met' if c['speedup'] >= need[1] else 'MISSED'}] (c) a {c['jobs']}-job stacked sweep at least "
                         f"{need[1]}x faster than its jobs one by one: {c['speedup']:.2f}x")
        else:
            lines.append(f"[n/a] (c) {c['jobs']} jobs on {res['environment']['device']}: the targets are "
                         + ", ".join(f"{j} jobs {x}x on {d}" for d, (j, x) in STACK_TARGETS.items()) + f" ({c['speedup']:.2f}x)")
    if "cli_run" in res:
        fixed = res["cli_run"]["fixed_seconds_median"]
        lines.append(f"[{'met' if fixed < 0.3 else 'MISSED'}] the fixed cost inside a default run (result.json's seconds "
                     f"minus its epochs'): {fixed:.3f} s (needs < 0.3 s)")
    if "d" in res and "mnist" in res["d"]["workloads"]:
        for label, most in REG_TARGETS:
            ratio = res["d"]["workloads"]["mnist"][label]["ratio"]
            lines.append(f"[{'met' if ratio <= most else 'MISSED'}] (d) {label} costs at most {most}x a plain epoch on "
                         f"MNIST: {ratio:.2f}x")
    if "cluster" in res and "skipped" not in res["cluster"]:
        e = res["cluster"]
        lines.append(f"[{'met' if e['elements_vs_per_job'] >= 2.0 else 'MISSED'}] (e) stacks as SLURM elements at least 2x "
                     f"faster than one element per job: {e['elements_vs_per_job']:.2f}x")
        lines.append(f"[{'met' if e['elements_vs_inprocess'] <= 1.10 else 'MISSED'}] (e) stacks as SLURM elements at most 10% "
                     f"slower than in-process stacked: {e['elements_vs_inprocess']:.2f}x its wall time")
    elif "cluster" in res:
        lines.append(f"[n/a] (e) the SLURM targets: {res['cluster']['skipped']}")
    if "search" in res:
        f = res["search"]
        lines.append(f"[{'met' if f['speedup'] >= SEARCH_TARGET else 'MISSED'}] (f) a search of {f['trials']} trials "
                     f"from the shell, {f['batch']} trials a stack, at least {SEARCH_TARGET:g}x faster than one trial at a "
                     f"time: {f[ONE]['wall_seconds']:.1f} s / {f[STACKED]['wall_seconds']:.1f} s = {f['speedup']:.2f}x")
    if "b" in res:
        lines.append(f"[{'met' if res['b']['x_dtype'] == 'torch.uint8' else 'MISSED'}] MNIST images stored as uint8 "
                     f"({res['b']['x_dtype']}) and standardised per batch (Data.prepare)")
    return lines
