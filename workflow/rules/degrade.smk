# Stage: one degraded copy of the clean set per configured degradation. Rule test_degrade
# (train.smk) is this rule for the test sets.


rule degrade:
    input:
        clean="results/clean/manifest.parquet",
        function_file=get_user_function_file,
    output:
        manifest="results/degraded/{degradation}/manifest.parquet",
        images=directory("results/degraded/{degradation}/images"),
    log:
        "logs/degrade/{degradation}.log",
    benchmark:
        "benchmarks/degrade/{degradation}.tsv"
    priority: 1
    conda:
        "../envs/grids.yaml"
    params:
        entry=get_degradation_entry,
        dataset="similarity",
        seed=CONFIG["data_seed"],
    shell:
        "python -m grids.degrade --clean {input.clean:q} --name {wildcards.degradation:q}"
        " --entry {params.entry:q} --seed {params.seed:q} --dataset {params.dataset:q}"
        " --manifest {output.manifest:q} --images-dir {output.images:q} > {log:q} 2>&1"


rule degraded_datasets:
    input:
        get_degraded_manifests(),
