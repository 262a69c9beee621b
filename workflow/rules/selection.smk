# Stage: adaptive model selection on the test sets (docs/method.md §7): does the divergence pick the
# true degradation's group, and does it predict the PSNR obtained without running the model?


rule selection_reference_set:
    input:
        manifest=get_reference_set_manifest,
        descriptor=get_descriptor_input,
    output:
        "results/selection/references/{degradation}.parquet",
    log:
        "logs/selection/references_{degradation}.log",
    benchmark:
        "benchmarks/selection/references_{degradation}.tsv"
    priority: 0
    conda:
        "../envs/grids.yaml"
    threads: side_by_side_threads(4)
    resources:
        mem_mb=8000,
        runtime=30,
    params:
        features=get_features_json,
        layers=CONFIG["selection"]["layers"],
        n_patches=(
            [] if CONFIG["selection"]["n_patches"] is None else ["--n-patches", CONFIG["selection"]["n_patches"]]
        ),
        seed=CONFIG["data_seed"],
    shell:
        "python -m grids.selection.signatures references --set {wildcards.degradation:q} --manifest {input.manifest:q}"
        " --descriptor={input.descriptor:q} --features {params.features:q} --layers {params.layers:q}"
        " {params.n_patches:q} --seed {params.seed:q} --threads {threads} --out {output:q} > {log:q} 2>&1"


# The same signatures for every degraded test image (unseen degradations included): computed while
# the search runs, read by the selection report and the routers instead of each computing them.
use rule selection_reference_set as test_signatures with:
    input:
        manifest="results/test/{test_set}/degraded/{degradation}/manifest.parquet",
        descriptor=get_descriptor_input,
    output:
        "results/selection/signatures/{test_set}/{degradation}.parquet",
    log:
        "logs/selection/signatures_{test_set}_{degradation}.log",
    benchmark:
        "benchmarks/selection/signatures_{test_set}_{degradation}.tsv"


rule selection_references:
    input:
        expand(
            "results/selection/references/{degradation}.parquet",
            degradation=PLAN.reference_sets,
        ),
    output:
        "results/selection/references.parquet",
    log:
        "logs/selection/references.log",
    # Concatenating Parquet files is bookkeeping: next to Snakemake, not a cluster job.
    localrule: True
    conda:
        "../envs/grids.yaml"
    shell:
        "python -m grids.selection.signatures combine --references {input:q} --out {output:q} > {log:q} 2>&1"


# The expected gain of `grids select` (grids/selection/gain.py) is fitted on the reference images restored
# by their final group's model: each reference then has a signature and a realised gain.
use rule evaluate as evaluate_references with:
    input:
        model="results/models/{group}/model.pth",
        tests=get_reference_tests,
    output:
        "results/eval/references/{group}.parquet",
    log:
        "logs/eval/references_{group}.log",
    benchmark:
        "benchmarks/eval/references_{group}.tsv"
    priority: 0
    params:
        test_sets=get_reference_set_args,
        degradations=reference_degradations,
        archs=PLAN.config_archs,


use rule evaluate_input as evaluate_references_input with:
    input:
        tests=get_reference_tests,
    output:
        "results/eval/references/input.parquet",
    log:
        "logs/eval/references_input.log",
    params:
        test_sets=get_reference_set_args,
        degradations=DEGRADATIONS,


rule selection_reference_gains:
    input:
        groups="results/final/groups.parquet",
        evals=get_reference_evals,
        clean=CLEAN_REFERENCES,
    output:
        "results/selection/reference_gains.parquet",
    log:
        "logs/selection/reference_gains.log",
    localrule: True
    conda:
        "../envs/grids.yaml"
    shell:
        "python -m grids.selection.gain --groups {input.groups:q} --eval {input.evals:q} --clean {input.clean:q}"
        " --out {output:q} > {log:q} 2>&1"


rule selection_tables:
    input:
        ggd="results/similarity/ggd.parquet",
        groups="results/final/groups.parquet",
        references="results/selection/references.parquet",
        reference_gains="results/selection/reference_gains.parquet",
        descriptor=get_descriptor_input,
        tests=get_test_manifests(),
        signatures=PLAN.test_signatures(),
        evals=get_selection_evals,
    output:
        divergences="results/selection/divergences.parquet",
        accuracy="results/selection/accuracy.parquet",
        scores="results/selection/scores.parquet",
        prediction="results/selection/prediction.parquet",
        ood="results/selection/ood.parquet",
        unseen="results/selection/unseen.parquet",
        drop_fit="results/selection/drop_fit.parquet",
        summary="results/selection/summary.md",
        summary_html=report_if_built(
            "results/selection/summary.html",
            caption="../report/selection_summary.rst",
            category="Selection",
        ),
        confusion=report_if_built(
            "results/selection/confusion.png",
            caption="../report/confusion.rst",
            category="Selection",
        ),
        scatter=report_if_built(
            "results/selection/prediction.png",
            caption="../report/prediction.rst",
            category="Selection",
        ),
        ood_plot=report_if_built(
            "results/selection/ood.png",
            caption="../report/ood.rst",
            category="Selection",
        ),
    log:
        "logs/selection/report.log",
    benchmark:
        "benchmarks/selection/report.tsv"
    conda:
        "../envs/grids.yaml"
    threads: 4
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=60,
    params:
        test_sets=get_test_set_args,
        signatures=get_signature_args,
        features=get_features_json,
        selection=get_selection_json,
        unseen=[word for name in UNSEEN for word in ("--unseen", name)],
        seed=CONFIG["data_seed"],
    shell:
        "python -m grids.selection.report --ggd {input.ggd:q} --groups {input.groups:q}"
        " --eval {input.evals:q} {params.test_sets:q} {params.signatures:q} --descriptor={input.descriptor:q}"
        " --features {params.features:q} --selection {params.selection:q} --references {input.references:q}"
        " --reference-gains {input.reference_gains:q}"
        " --seed {params.seed:q} {params.unseen:q}"
        " --threads {threads} --divergences {output.divergences:q} --accuracy {output.accuracy:q}"
        " --scores {output.scores:q} --prediction {output.prediction:q} --ood {output.ood:q}"
        " --unseen-table {output.unseen:q} --drop-fit {output.drop_fit:q} --summary {output.summary:q}"
        " --summary-html {output.summary_html:q}"
        " --confusion {output.confusion:q} --scatter {output.scatter:q} --ood-plot {output.ood_plot:q}"
        " > {log:q} 2>&1"


rule selection_failure:
    input:
        accuracy="results/selection/accuracy.parquet",
        scores="results/selection/scores.parquet",
        groups="results/final/groups.parquet",
        evals=get_selection_evals,
        mix_all=get_mix_all_evals(),
    output:
        images="results/selection/failure_images.parquet",
        table="results/selection/failure.parquet",
        gain="results/selection/gain.parquet",
        fallback="results/selection/fallback.parquet",
        figure=report_if_built(
            "results/selection/failure.png",
            caption="../report/failure.rst",
            category="Selection",
        ),
    log:
        "logs/selection/failure.log",
    benchmark:
        "benchmarks/selection/failure.tsv"
    conda:
        "../envs/grids.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        min_gain=CONFIG["selection"]["min_helpful_gain"],
        alpha=CONFIG["selection"]["alpha"],
        mix_all=[] if PLAN.mix_all is None else ["--mix-all", PLAN.mix_all],
        seed=CONFIG["data_seed"],
    shell:
        "python -m grids.selection.failure --accuracy {input.accuracy:q} --scores {input.scores:q}"
        " --groups {input.groups:q} --eval {input.evals:q} {input.mix_all:q}"
        " --min-gain {params.min_gain:q} --alpha {params.alpha:q} {params.mix_all:q} --seed {params.seed:q}"
        " --images {output.images:q} --out {output.table:q} --figure {output.figure:q}"
        " --gain {output.gain:q} --fallback {output.fallback:q} > {log:q} 2>&1"


rule selection_routers:
    input:
        accuracy="results/selection/accuracy.parquet",
        groups="results/final/groups.parquet",
        ggd="results/similarity/ggd.parquet",
        references="results/selection/references.parquet",
        reference_gains="results/selection/reference_gains.parquet",
        descriptor=get_descriptor_input,
        # the CNN router's training images: the degraded similarity sets and the clean one (the identity)
        degraded=[*get_degraded_manifests(), "results/clean/manifest.parquet"],
        tests=get_test_manifests(),
        signatures=PLAN.test_signatures(),
        evals=get_selection_evals,
    output:
        images="results/selection/router_images.parquet",
        table="results/selection/routers.parquet",
        curve="results/selection/router_curve.parquet",
        figure=report_if_built(
            "results/selection/routers.png",
            caption="../report/routers.rst",
            category="Selection",
        ),
    log:
        "logs/selection/routers.log",
    benchmark:
        "benchmarks/selection/routers.tsv"
    conda:
        "../envs/grids.yaml"
    # Trained routers against the training-free choice: both train on the CPU, seeded.
    threads: 2
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        test_sets=get_test_set_args,
        signatures=get_signature_args,
        features=get_features_json,
        selection=get_selection_json,
        seed=CONFIG["training_seed"],
        min_gain=CONFIG["selection"]["min_helpful_gain"],
        steps=CONFIG["selection"]["router_steps"],
    shell:
        "python -m grids.selection.routers --accuracy {input.accuracy:q} --groups {input.groups:q} --ggd {input.ggd:q}"
        " --references {input.references:q} --reference-gains {input.reference_gains:q}"
        " --degraded {input.degraded:q}"
        " --eval {input.evals:q} {params.test_sets:q} {params.signatures:q}"
        " --descriptor={input.descriptor:q}"
        " --features {params.features:q} --selection {params.selection:q} --seed {params.seed:q}"
        " --min-gain {params.min_gain:q} --steps {params.steps:q} --threads {threads} --images {output.images:q} --out {output.table:q}"
        " --figure {output.figure:q} --curve {output.curve:q} > {log:q} 2>&1"


rule selection_report:
    input:
        rules.selection_tables.output,
        rules.selection_failure.output,
        rules.selection_routers.output,
