# Stage: does the similarity predict which degradations can share a model? The paper's Table 2
# (experiment groups mix-trained by rule train, so the search's models are reused) and the premise
# over every trained group, with the distance from several feature variants (docs/method.md §8).


rule untrained_descriptor:
    output:
        UNTRAINED_DESCRIPTOR,
    log:
        "logs/validation/untrained_descriptor.log",
    conda:
        "../envs/grids.yaml"
    params:
        seed=CONFIG["data_seed"],
    shell:
        "python -m grids.validation untrained --seed {params.seed:q} --out {output:q} > {log:q} 2>&1"


# One job per variant fits every set (the same fit as rule ggd_fit, set by set): a dozen sets of
# seconds each would otherwise pay a dozen process start-ups.
rule validation_ggd:
    input:
        manifests=get_all_set_manifests(),
        descriptor=get_variant_descriptor,
    output:
        expand(
            "results/validation/ggd/{{variant}}/{image_set}.parquet",
            image_set=IMAGE_SETS,
        ),
    log:
        "logs/validation/ggd_{variant}.log",
    benchmark:
        "benchmarks/validation/ggd_{variant}.tsv"
    priority: 0
    conda:
        "../envs/grids.yaml"
    threads: side_by_side_threads(4)
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        sets=get_variant_set_args,
        features=get_variant_features_json,
        seed=CONFIG["data_seed"],
    shell:
        "python -m grids.similarity ggd-sets {params.sets:q} --descriptor={input.descriptor:q}"
        " --features {params.features:q} --seed {params.seed:q} --threads {threads} > {log:q} 2>&1"


rule validation_matrix:
    input:
        expand(
            "results/validation/ggd/{{variant}}/{image_set}.parquet",
            image_set=IMAGE_SETS,
        ),
    output:
        "results/validation/matrices/{variant}.parquet",
    log:
        "logs/validation/matrix_{variant}.log",
    # Concatenating and correlating tables is bookkeeping: next to Snakemake, not a cluster job.
    localrule: True
    conda:
        "../envs/grids.yaml"
    params:
        distance=CONFIG["features"]["distance"],
    shell:
        "python -m grids.validation matrix --ggd {input:q} --distance {params.distance:q} --out {output:q}"
        " > {log:q} 2>&1"


rule validation_tables:
    input:
        matrices=[variant_matrix(v) for v in VALIDATION["variants"]],
        verified="results/grouping/verified.parquet",
        evals=get_validation_evals(),
        search_evals=get_search_evals,
    output:
        table2="results/validation/table2.parquet",
        drops="results/validation/drops.parquet",
        table2_md="results/validation/table2.md",
        table2_html=report_if_built(
            "results/validation/table2.html",
            caption="../report/table2_table.rst",
            category="Similarity validation",
        ),
        table2_png=report_if_built(
            "results/validation/table2.png",
            caption="../report/table2.rst",
            category="Similarity validation",
        ),
        premise="results/validation/premise.parquet",
        premise_groups="results/validation/premise_groups.parquet",
        premise_png=report_if_built(
            "results/validation/premise.png",
            caption="../report/premise.rst",
            category="Similarity validation",
        ),
    log:
        "logs/validation/tables.log",
    # Concatenating and correlating tables is bookkeeping: next to Snakemake, not a cluster job.
    localrule: True
    conda:
        "../envs/grids.yaml"
    params:
        experiments=json.dumps(VALIDATION["experiments"], sort_keys=True),
        # Every trained model, each once (the search may have verified an experiment's group).
        evals=get_every_trained_eval,
        degradations=DEGRADATIONS,
        variants=get_variant_args,
        test_set=validation_test_set(),
        bootstrap=VALIDATION["bootstrap"],
        min_gain=CONFIG["grouping"]["min_learned_gain"],
        seed=CONFIG["data_seed"],
    shell:
        "python -m grids.validation tables --experiments {params.experiments:q}"
        " --degradations {params.degradations:q} --eval {params.evals:q} --verified {input.verified:q}"
        " {params.variants:q} --test-set {params.test_set:q} --bootstrap {params.bootstrap:q}"
        " --min-gain {params.min_gain:q}"
        " --seed {params.seed:q} --table2 {output.table2:q} --drops {output.drops:q}"
        " --table2-md {output.table2_md:q} --table2-html {output.table2_html:q} --table2-png {output.table2_png:q}"
        " --premise {output.premise:q} --premise-groups {output.premise_groups:q}"
        " --premise-png {output.premise_png:q} > {log:q} 2>&1"


rule similarity_validation:
    input:
        rules.validation_tables.output,
