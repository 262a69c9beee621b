# Stage: the grouping search (rounds of a checkpoint), final group models and Table 1.
#
# Round r plans from the evaluations of every group that rounds 0..r-1 asked for; when it asks
# for more, Snakemake trains and evaluates them (rules train/evaluate) and runs round r+1. The
# round that answers writes the partition. Models are keyed by group name, so a group is never
# trained twice, whatever delta or round asks for it.


# The bookkeeping rules (candidates, rounds, result, export, Table 1) take a second or two: they
# are local rules, which on a cluster run next to Snakemake instead of each waiting a scheduler
# cycle as a Slurm job.


rule grouping_candidates:
    input:
        "results/similarity/matrix.parquet",
    output:
        "results/grouping/candidates.parquet",
    log:
        "logs/grouping/candidates.log",
    priority: 1
    localrule: True
    conda:
        "../envs/grids.yaml"
    params:
        degradations=DEGRADATIONS,
    shell:
        "python -m grids.grouping.rounds candidates --matrix {input:q} --degradations {params.degradations:q}"
        " --out {output:q} > {log:q} 2>&1"


checkpoint grouping_round:
    input:
        matrix="results/similarity/matrix.parquet",
        evals=get_round_evals,
        previous=get_previous_round,
        noise_floor=get_search_noise_floor,
    output:
        "results/grouping/rounds/{round}.parquet",
    log:
        "logs/grouping/round_{round}.log",
    priority: 1
    localrule: True
    conda:
        "../envs/grids.yaml"
    params:
        degradations=DEGRADATIONS,
        grouping=get_grouping_json,
        noise_floor=get_noise_floor_arg,
        seed=CONFIG["data_seed"],
    shell:
        "python -m grids.grouping.rounds round --round {wildcards.round:q} --matrix {input.matrix:q}"
        " --degradations {params.degradations:q} --eval {input.evals:q}"
        " --grouping {params.grouping:q} {params.noise_floor:q} --seed {params.seed:q}"
        " --out {output:q} > {log:q} 2>&1"


# A checkpoint: which groups the stability retrains at other seeds is read from its tables.
checkpoint grouping_result:
    input:
        matrix="results/similarity/matrix.parquet",
        rounds=get_all_rounds,
        evals=get_search_evals,
        noise_floor=get_noise_floor(),
    output:
        verified="results/grouping/verified.parquet",
        drops="results/grouping/drops.parquet",
        partitions="results/grouping/partitions.parquet",
        plot=report_if_built(
            "results/grouping/search.png",
            caption="../report/search.rst",
            category="Grouping",
        ),
        groups="results/final/groups.parquet",
    log:
        "logs/grouping/result.log",
    priority: 1
    localrule: True
    conda:
        "../envs/grids.yaml"
    params:
        degradations=DEGRADATIONS,
        grouping=get_grouping_json,
        noise_floor=get_noise_floor_arg,
        seed=CONFIG["data_seed"],
    shell:
        "python -m grids.grouping.rounds finish --rounds {input.rounds:q} --matrix {input.matrix:q}"
        " --degradations {params.degradations:q} --eval {input.evals:q} --grouping {params.grouping:q}"
        " {params.noise_floor:q} --seed {params.seed:q}"
        " --verified {output.verified:q} --drops {output.drops:q} --partitions {output.partitions:q}"
        " --plot {output.plot:q} --groups {output.groups:q} > {log:q} 2>&1"


# Does the answer rest on the test images, or on the training run? The verdicts re-decided on
# resampled test images, and at the replicate training seeds (grids/grouping/stability.py).
rule grouping_stability:
    input:
        verified="results/grouping/verified.parquet",
        groups="results/final/groups.parquet",
        evals=get_search_evals,
        noise_floor=get_noise_floor(),
        replicates=get_stability_replicate_evals,
    output:
        stability="results/grouping/stability.parquet",
        partitions="results/grouping/stability_partitions.parquet",
        seed_verdicts="results/grouping/seed_verdicts.parquet",
        plot=report_if_built(
            "results/grouping/stability.png",
            caption="../report/stability.rst",
            category="Grouping",
        ),
    log:
        "logs/grouping/stability.log",
    priority: 1
    localrule: True
    conda:
        "../envs/grids.yaml"
    params:
        degradations=DEGRADATIONS,
        grouping=get_grouping_json,
        noise_floor=get_noise_floor_arg,
        seed=CONFIG["data_seed"],
        training_seed=CONFIG["training_seed"],
        replicates=get_stability_replicate_args,
    shell:
        "python -m grids.grouping.stability --verified {input.verified:q} --groups {input.groups:q}"
        " --degradations {params.degradations:q} --eval {input.evals:q} --grouping {params.grouping:q}"
        " {params.noise_floor:q} --seed {params.seed:q} --training-seed {params.training_seed:q}"
        " {params.replicates:q} --stability {output.stability:q} --stability-partitions {output.partitions:q}"
        " --seed-verdicts {output.seed_verdicts:q} --plot {output.plot:q} > {log:q} 2>&1"


# One final group's exported model: each file declared, so a deleted one is rebuilt; the files of
# an earlier partition's groups are removed from the folder by the export.
rule final_group_model:
    input:
        groups="results/final/groups.parquet",
        model="results/models/{group}/model.pth",
        evals=get_group_export_evals,
        identity="results/eval/input.parquet",  # the input's SSIM, the cards' baseline
    output:
        pth="results/final/models/{group}.pth",
        safetensors="results/final/models/{group}.safetensors",
        card="results/final/models/{group}.md",
    log:
        "logs/final/models/{group}.log",
    localrule: True
    conda:
        "../envs/grids.yaml"
    params:
        grouping=get_grouping_json,
        config_hash=PLAN.config_hash,
        training_data=get_training_images_json,
    shell:
        "python -m grids.grouping.rounds export --groups {input.groups:q} --group {wildcards.group:q}"
        " --model {input.model:q} --eval {input.evals:q} {input.identity:q} --grouping {params.grouping:q}"
        " --config-hash {params.config_hash:q} --training-data {params.training_data:q}"
        " --pth {output.pth:q} --safetensors {output.safetensors:q} --card {output.card:q} > {log:q} 2>&1"


rule table1:
    input:
        groups="results/final/groups.parquet",
        verified="results/grouping/verified.parquet",
        evals=get_table1_evals,
        identity="results/eval/input.parquet",
        baselines=get_baseline_evals(),
    output:
        table="results/final/table1.parquet",
        markdown="results/final/table1.md",
        chart=report_if_built(
            "results/final/table1.png",
            caption="../report/table1.rst",
            category="Grouping",
        ),
        html=report_if_built(
            "results/final/table1.html",
            caption="../report/table1_table.rst",
            category="Grouping",
        ),
    log:
        "logs/final/table1.log",
    localrule: True
    conda:
        "../envs/grids.yaml"
    params:
        baselines=get_baseline_args,
        min_gain=CONFIG["grouping"]["min_learned_gain"],
    shell:
        "python -m grids.report table1 --groups {input.groups:q} --eval {input.evals:q} {input.identity:q}"
        " {params.baselines:q} --min-gain {params.min_gain:q} --verified {input.verified:q}"
        " --table {output.table:q} --markdown {output.markdown:q}"
        " --chart {output.chart:q} --html {output.html:q} > {log:q} 2>&1"


rule final_models:
    input:
        get_final_exports,
        "results/selection/references.parquet",  # what `grids select` compares an input with
        "results/selection/reference_gains.parquet",  # and what it predicts the gain from
        rules.grouping_candidates.output,
        rules.grouping_result.output,
        rules.grouping_stability.output,
        rules.table1.output,
