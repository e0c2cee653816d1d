"""The corpus-scale study's tidy tables, assembled from the units' files in a fixed order:

    results.csv     model, then the token study's columns; prompt_id "partition-<k>" for one
                    partition (n_points: its distinct points), "partitions" for the mean over
                    partitions (error: their standard deviation; n_points: the fewest distinct
                    points of any partition); quantity as in the token study, plus id_gride_auto
    overlap.csv     model, partition ("partition-<k>" or "mean"), site_a, site_b, value
    cka.csv         the same columns, linear CKA
    partitions.csv  sequence, document, start, length, partition (-1: in no partition)
    spectra.csv     model, prompt_id, site, component, eigenvalue, explained_variance_ratio
    skipped.csv     model, prompt_id, site, estimator, reason
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..outputs.tables import RESULT_COLUMNS, to_csv, write_table
from ..rundir.fsio import atomic_write_text, read_json
from ..rundir.layout import TABLE_DIR
from .analyses import summarise
from .plan import ScalePlan

SCALE_RESULT_COLUMNS = ["model", *RESULT_COLUMNS]
COMPARE_COLUMNS = ["model", "partition", "site_a", "site_b", "value"]
PARTITION_COLUMNS = ["sequence", "document", "start", "length", "partition"]
SCALE_SPECTRUM_COLUMNS = ["model", "prompt_id", "site", "component", "eigenvalue", "explained_variance_ratio"]
SCALE_SKIPPED_COLUMNS = ["model", "prompt_id", "site", "estimator", "reason"]
SUMMARY_ID = "partitions"


def partition_id(p: int) -> str:
    return f"partition-{p}"


@dataclass
class ScaleTableRows:
    results: list
    overlap: list
    cka: list
    partitions: list
    spectra: list
    skipped: list


def _site_columns(site) -> list:
    return [site.name, site.label, site.block, site.sublayer, site.depth]


def _compare_rows(plan: ScalePlan, run_name: str, key: str) -> list:
    """Per partition, then the mean over partitions, each site pair in depth order."""
    names = [s.name for s in plan.sites]
    P = plan.partition_plan.partitions
    mats = [np.asarray(read_json(plan.layout.compare_paths(run_name, p)[0])[key], dtype=float) for p in range(P)]
    rows = []
    for label, m in [(partition_id(p), mats[p]) for p in range(P)] + [("mean", np.mean(mats, axis=0))]:
        rows += [[run_name, label, a, b, float(m[i, j])] for i, a in enumerate(names) for j, b in enumerate(names)]
    return rows


def assemble_scale_tables(plan: ScalePlan) -> ScaleTableRows:
    results, spectra, skipped, overlap, cka = [], [], [], [], []
    P = plan.partition_plan.partitions
    for run in plan.runs:
        for site in plan.sites:
            per_partition, n_points = [], []
            for p in range(P):
                record = read_json(plan.layout.unit_paths(run.name, site.name, p)[0])
                items = [tuple(r) for r in record["rows"]]
                per_partition.append(items)
                n_points.append(record["n_points"])
                results += [[run.name, partition_id(p), "", "", *_site_columns(site), record["n_points"], q, par, v, e]
                            for q, par, v, e in items]
                if record["spectrum"] is not None:
                    total = sum(record["spectrum"])
                    spectra += [[run.name, partition_id(p), site.name, c + 1, ev, ev / total if total > 0 else float("nan")]
                                for c, ev in enumerate(record["spectrum"])]
                skipped += [[run.name, partition_id(p), site.name, est, why] for est, why in record["skipped"]]
            # n_points of the summary: the fewest distinct points any partition had
            results += [[run.name, SUMMARY_ID, "", "", *_site_columns(site), min(n_points), q, par, v, e]
                        for q, par, v, e in summarise(per_partition)]
        overlap += _compare_rows(plan, run.name, "overlap")
        cka += _compare_rows(plan, run.name, "cka")
    seqs = plan.sequences
    partitions = [[i, int(d), int(s), int(n), int(p)]
                  for i, (d, s, n, p) in enumerate(zip(seqs.document, seqs.start, seqs.lengths, plan.partition_of))]
    return ScaleTableRows(results, overlap, cka, partitions, spectra, skipped)


def write_scale_tables(plan: ScalePlan, tables: ScaleTableRows) -> None:
    folder = plan.out / TABLE_DIR
    folder.mkdir(exist_ok=True)
    write_table(folder, "results", SCALE_RESULT_COLUMNS, tables.results)
    write_table(folder, "overlap", COMPARE_COLUMNS, tables.overlap)
    write_table(folder, "cka", COMPARE_COLUMNS, tables.cka)
    # one row per sequence (up to 10^6): CSV only
    atomic_write_text(folder / "partitions.csv", to_csv(PARTITION_COLUMNS, tables.partitions))
    write_table(folder, "spectra", SCALE_SPECTRUM_COLUMNS, tables.spectra)
    write_table(folder, "skipped", SCALE_SKIPPED_COLUMNS, tables.skipped)
