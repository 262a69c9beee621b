# Stage: GGD of every image set's deep features, then the log-KL similarity matrix + heatmap.


rule ggd_fit:
    input:
        manifest=get_set_manifest,
        descriptor=get_descriptor_input,
    output:
        "results/similarity/ggd/{image_set}.parquet",
    log:
        "logs/similarity/ggd_{image_set}.log",
    benchmark:
        "benchmarks/similarity/ggd_{image_set}.tsv"
    # The search starts from this matrix (see get_search_priority).
    priority: 1
    conda:
        "../envs/grids.yaml"
    threads: side_by_side_threads(4)
    resources:
        mem_mb=8000,
        runtime=30,
    params:
        features=get_features_json,
        seed=CONFIG["data_seed"],
    shell:
        "python -m grids.similarity ggd --set {wildcards.image_set:q} --manifest {input.manifest:q}"
        " --descriptor={input.descriptor:q} --features {params.features:q} --seed {params.seed:q}"
        " --threads {threads} --out {output:q} > {log:q} 2>&1"


rule similarity_tables:
    input:
        get_ggd_files(),
    output:
        ggd="results/similarity/ggd.parquet",
        matrix="results/similarity/matrix.parquet",
        heatmap=report_if_built(
            "results/similarity/heatmap.png",
            caption="../report/heatmap.rst",
            category="Similarity",
        ),
        heatmap_svg="results/similarity/heatmap.svg",
    log:
        "logs/similarity/matrix.log",
    priority: 1
    # Seconds of table work: on a cluster it runs next to Snakemake, not waiting for a Slurm slot.
    localrule: True
    conda:
        "../envs/grids.yaml"
    params:
        distance=CONFIG["features"]["distance"],
    shell:
        "python -m grids.similarity matrix --ggd {input:q} --ggd-table {output.ggd:q} --matrix {output.matrix:q}"
        " --heatmap {output.heatmap:q} --heatmap-svg {output.heatmap_svg:q} --distance {params.distance:q}"
        " > {log:q} 2>&1"


rule similarity_matrix:
    input:
        rules.similarity_tables.output,
