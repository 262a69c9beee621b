# Stage: the grouping search (rounds of a checkpoint), final group models and Table 1.
#
# Round r plans from the evaluations of every group that rounds 0..r-1 asked for; when it asks
# for more, Snakemake trains and evaluates them (rules train/evaluate) and runs round r+1. The
# round that answers writes the partition. Models are keyed by group name, so a group is never
# trained twice, whatever delta or round asks for it.


# Bookkeeping jobs of a second or two: on a cluster they run next to Snakemake, not as Slurm jobs
# (each round would otherwise wait a scheduler cycle).
localrules:
    grouping_candidates,
    grouping_round,
    grouping_result,
    final_group_models,
    table1,


rule grouping_candidates:
    input:
        "results/similarity/matrix.parquet",
    output:
        "results/grouping/candidates.parquet",
    log:
        "logs/grouping/candidates.log",
    conda:
        "../../environment.yml"
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
    output:
        "results/grouping/rounds/{round}.parquet",
    log:
        "logs/grouping/round_{round}.log",
    conda:
        "../../environment.yml"
    params:
        degradations=DEGRADATIONS,
        grouping=get_grouping_json,
    shell:
        "python -m grids.grouping.rounds round --round {wildcards.round:q} --matrix {input.matrix:q}"
        " --degradations {params.degradations:q} --eval {input.evals:q}"
        " --grouping {params.grouping:q} --out {output:q} > {log:q} 2>&1"


rule grouping_result:
    input:
        matrix="results/similarity/matrix.parquet",
        rounds=get_all_rounds,
        evals=get_search_evals,
    output:
        verified="results/grouping/verified.parquet",
        drops="results/grouping/drops.parquet",
        partitions="results/grouping/partitions.parquet",
        plot=report(
            "results/grouping/search.png",
            caption="../report/search.rst",
            category="Grouping",
        ),
        groups="results/final/groups.parquet",
    log:
        "logs/grouping/result.log",
    conda:
        "../../environment.yml"
    params:
        degradations=DEGRADATIONS,
        grouping=get_grouping_json,
    shell:
        "python -m grids.grouping.rounds finish --rounds {input.rounds:q} --matrix {input.matrix:q}"
        " --degradations {params.degradations:q} --eval {input.evals:q}"
        " --grouping {params.grouping:q} --out-dir results > {log:q} 2>&1"


rule final_group_models:
    input:
        groups="results/final/groups.parquet",
        models=get_final_models,
    output:
        directory("results/final/models"),
    log:
        "logs/final/models.log",
    conda:
        "../../environment.yml"
    shell:
        "python -m grids.grouping.rounds export --groups {input.groups:q} --models results/models"
        " --out {output:q} > {log:q} 2>&1"


rule table1:
    input:
        groups="results/final/groups.parquet",
        evals=get_table1_evals,
        baselines=get_baseline_evals(),
    output:
        table="results/final/table1.parquet",
        markdown="results/final/table1.md",
        chart=report(
            "results/final/table1.png",
            caption="../report/table1.rst",
            category="Grouping",
        ),
    log:
        "logs/final/table1.log",
    conda:
        "../../environment.yml"
    params:
        baselines=get_baseline_args,
    shell:
        "python -m grids.report table1 --groups {input.groups:q} --eval {input.evals:q}"
        " {params.baselines:q} --out results/final > {log:q} 2>&1"


rule final_models:
    input:
        rules.final_group_models.output,
        get_selection_references(),  # what `grids select` compares an input with
        rules.grouping_candidates.output,
        rules.grouping_result.output,
        rules.table1.output,
