# Stage: one degraded copy of the clean set per configured degradation.


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
    conda:
        "../../environment.yml"
    params:
        entry=get_degradation_entry,
        seed=CONFIG["seed"],
    shell:
        "python -m grids.degrade --clean {input.clean:q} --name {wildcards.degradation:q}"
        " --entry {params.entry:q} --seed {params.seed:q}"
        " --out results/degraded/{wildcards.degradation:q} > {log:q} 2>&1"


rule degraded_datasets:
    input:
        get_degraded_manifests(),
