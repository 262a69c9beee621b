# Stage: training data, test sets, restoration models (one per degradation group) and evaluation.


use rule clean_images as train_clean_images with:
    input:
        folder_files=get_training_image_files,
    output:
        manifest="results/train/clean/manifest.parquet",
        images=directory("results/train/clean/images"),
    log:
        "logs/train_clean_images.log",
    params:
        images=get_training_images_json,
        dataset="train",
        seed=CONFIG["data_seed"],
        checks=get_checks_cache,


# The training images as uncompressed arrays: every training job reads its crops from here instead
# of decoding the whole set. Only index.parquet is declared: the arrays (named by content, in the
# folder beside it) survive a rerun, which rebuilds only the images that changed.
rule train_store:
    input:
        clean="results/train/clean/manifest.parquet",
    output:
        index="results/train/store/index.parquet",
    log:
        "logs/train_store.log",
    benchmark:
        "benchmarks/train_store.tsv"
    priority: 1
    conda:
        "../envs/grids.yaml"
    threads: side_by_side_threads(8)
    params:
        arrays=get_store_arrays,
    shell:
        "python -m grids.store --clean {input.clean:q} --index {output.index:q} --arrays {params.arrays:q}"
        " --threads {threads} > {log:q} 2>&1"


use rule clean_images as test_clean_images with:
    input:
        folder_files=get_test_image_files,
    output:
        manifest="results/test/{test_set}/clean/manifest.parquet",
        images=directory("results/test/{test_set}/clean/images"),
    log:
        "logs/test/{test_set}/clean_images.log",
    params:
        images=get_test_images_json,
        dataset="test-{test_set}",
        seed=CONFIG["data_seed"],
        checks=get_checks_cache,


use rule degrade as test_degrade with:
    input:
        clean="results/test/{test_set}/clean/manifest.parquet",
        function_file=get_user_function_file,
    output:
        manifest="results/test/{test_set}/degraded/{degradation}/manifest.parquet",
        images=directory("results/test/{test_set}/degraded/{degradation}/images"),
    log:
        "logs/test/{test_set}/degrade_{degradation}.log",
    benchmark:
        "benchmarks/test/{test_set}/degrade_{degradation}.tsv"
    params:
        entry=get_degradation_entry,
        dataset="test-{test_set}",
        seed=CONFIG["data_seed"],


rule train:
    input:
        store="results/train/store/index.parquet",
        function_files=get_group_function_files,
        arch_file=get_arch_files,
    output:
        model="results/models/{group}/model.pth",
        log_table="results/models/{group}/train_log.parquet",
    log:
        "logs/train/{group}.log",
    benchmark:
        "benchmarks/train/{group}.tsv"
    priority: get_search_priority
    conda:
        "../envs/grids.yaml"
    threads: side_by_side_threads(4)
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=get_train_runtime,
    params:
        group="{group}",
        degradations=get_group_entries_json,
        recipe=get_recipe_json,
        seed=CONFIG["training_seed"],
        # Periodic checkpoints live outside the declared outputs: Snakemake deletes those when a
        # job fails, and the next attempt must find them to resume.
        resume=working_file("results/resume/{group}.pth"),
    shell:
        "python -m grids.train --group {params.group:q} --store {input.store:q}"
        " --degradations {params.degradations:q} --recipe {params.recipe:q} --seed {params.seed:q}"
        " --threads {threads} --out {output.model:q} --log {output.log_table:q}"
        " --resume {params.resume:q} > {log:q} 2>&1"


rule evaluate:
    input:
        model="results/models/{group}/model.pth",
        tests=get_eval_tests,
    output:
        "results/eval/{group}.parquet",
    log:
        "logs/eval/{group}.log",
    benchmark:
        "benchmarks/eval/{group}.tsv"
    priority: get_search_priority
    conda:
        "../envs/grids.yaml"
    threads: side_by_side_threads(4)
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=60,
    params:
        test_sets=get_test_set_args,
        degradations=eval_degradations,
        archs=PLAN.config_archs,
    shell:
        "python -m grids.evaluate --model {input.model:q} {params.test_sets:q}"
        " --degradations {params.degradations:q} --arch {params.archs:q} --threads {threads}"
        " --out {output:q} > {log:q} 2>&1"


use rule train as train_baseline with:
    input:
        store="results/train/store/index.parquet",
        function_files=get_all_function_files,
        arch_file=get_baseline_arch_files,
    output:
        model="results/baselines/{trained}/model.pth",
        log_table="results/baselines/{trained}/train_log.parquet",
    log:
        "logs/train/baseline_{trained}.log",
    benchmark:
        "benchmarks/train/baseline_{trained}.tsv"
    params:
        group=PLAN.baseline_group,
        degradations=json.dumps(CONFIG["degradations"], sort_keys=True),
        recipe=get_baseline_recipe_json,
        seed=CONFIG["training_seed"],
        resume=working_file("results/resume/baseline_{trained}.pth"),


# A published-weights baseline: its file checked against the architecture and written as a GRIDS
# checkpoint, which rule evaluate_baseline scores like any model (nothing is trained).
rule import_baseline:
    input:
        weights=get_published_weights,
        arch_file=get_published_arch_files,
    output:
        "results/baselines/{published}/model.pth",
    log:
        "logs/baselines/import_{published}.log",
    localrule: True
    conda:
        "../envs/grids.yaml"
    params:
        arch=get_published_arch,
        arch_kwargs=get_published_arch_kwargs,
    shell:
        "python -m grids.checkpoint import --weights {input.weights:q} --arch {params.arch:q}"
        " --arch-kwargs {params.arch_kwargs:q} --group {wildcards.published:q} --out {output:q} > {log:q} 2>&1"


# A final group's model on every test degradation it was not trained on: what the selection
# report reads when it picks this model for any test image (the search needs only the members).
use rule evaluate as evaluate_others with:
    input:
        model="results/models/{others}/model.pth",
        tests=get_eval_tests,
    output:
        "results/eval/others/{others}.parquet",
    log:
        "logs/eval/others_{others}.log",
    benchmark:
        "benchmarks/eval/others_{others}.tsv"
    priority: 0


# Replicates: models trained again from the other training seeds (training_seed + k). The noise
# floor's are the single-task models of grouping.replicates.degradations, each scored on its own
# degradation, so that a drop is reported with its seed noise; the stability's are the groups the
# search ends near (grouping.replicates.near_delta), scored on their members.
use rule train as train_replicate with:
    input:
        store="results/train/store/index.parquet",
        function_files=get_group_function_files,
        arch_file=get_arch_files,
    output:
        model="results/replicates/{group}/seed{k}/model.pth",
        log_table="results/replicates/{group}/seed{k}/train_log.parquet",
    log:
        "logs/replicates/{group}_seed{k}.log",
    benchmark:
        "benchmarks/replicates/{group}_seed{k}.tsv"
    params:
        group="{group}",
        degradations=get_group_entries_json,
        recipe=get_recipe_json,
        seed=get_replicate_seed,
        resume=working_file("results/resume/replicate_{group}_seed{k}.pth"),


use rule evaluate as evaluate_replicate with:
    input:
        model="results/replicates/{group}/seed{k}/model.pth",
        tests=get_eval_tests,
    output:
        "results/replicates/{group}/seed{k}/eval.parquet",
    log:
        "logs/replicates/{group}_seed{k}_eval.log",
    benchmark:
        "benchmarks/replicates/{group}_seed{k}_eval.tsv"
    params:
        test_sets=get_test_set_args,
        degradations=eval_degradations,
        archs=PLAN.config_archs,


rule noise_floor:
    input:
        single=expand("results/eval/{group}.parquet", group=REPLICATED),
        replicates=get_replicate_evals(),
    output:
        "results/grouping/noise_floor.parquet",
    log:
        "logs/grouping/noise_floor.log",
    # The search waits for it (conservative decision): before the jobs only Table 2 needs.
    priority: PLAN.priority(noise_floor=True)
    localrule: True
    conda:
        "../envs/grids.yaml"
    params:
        replicates=get_replicate_args,
        test_set=validation_test_set(),
    shell:
        "python -m grids.grouping.noise_floor --test-set {params.test_set:q} --single {input.single:q}"
        " {params.replicates:q} --out {output:q} > {log:q} 2>&1"


# The degraded input itself scored as a model (the identity): the level every model is judged
# against first (Table 1's `input` column).
rule evaluate_input:
    input:
        tests=get_test_manifests(),
    output:
        "results/eval/input.parquet",
    log:
        "logs/eval/input.log",
    localrule: True
    conda:
        "../envs/grids.yaml"
    params:
        test_sets=get_test_set_args,
        degradations=TEST_DEGRADATIONS,
    shell:
        "python -m grids.evaluate --model input {params.test_sets:q} --degradations {params.degradations:q}"
        " --out {output:q} > {log:q} 2>&1"


use rule evaluate as evaluate_baseline with:
    input:
        model="results/baselines/{baseline}/model.pth",
        tests=get_eval_tests,
    output:
        "results/baselines/{baseline}/eval.parquet",
    log:
        "logs/eval/baseline_{baseline}.log",
    benchmark:
        "benchmarks/eval/baseline_{baseline}.tsv"


rule upper_bounds_table:
    input:
        get_upper_bound_evals(),
    output:
        table="results/upper_bounds/evaluation.parquet",
        summary="results/upper_bounds/summary.md",
    log:
        "logs/upper_bounds.log",
    priority: 1
    # Seconds of table work: on a cluster it runs next to Snakemake, not waiting for a Slurm slot.
    localrule: True
    conda:
        "../envs/grids.yaml"
    params:
        min_gain=CONFIG["grouping"]["min_learned_gain"],
    shell:
        "python -m grids.report upper-bounds --eval {input:q} --table {output.table:q}"
        " --summary {output.summary:q} --min-gain {params.min_gain:q} > {log:q} 2>&1"


rule upper_bounds:
    input:
        rules.upper_bounds_table.output,
