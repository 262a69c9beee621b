# Stage: train the MSRResNet x4 descriptor (only needed with descriptor.weights: train).


rule train_descriptor:
    input:
        photos=get_descriptor_photo_files,
    output:
        weights="results/descriptor/msrresnet_x4.pth",
        # written beside the weights by grids.train_descriptor: the same tensors
        safetensors="results/descriptor/msrresnet_x4.safetensors",
        card="results/descriptor/msrresnet_x4.md",
        log_table="results/descriptor/msrresnet_x4.log.parquet",
    log:
        "logs/train_descriptor.log",
    benchmark:
        "benchmarks/train_descriptor.tsv"
    conda:
        "../envs/grids.yaml"
    threads: 8
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=120,
    params:
        recipe=get_descriptor_train_args,
    shell:
        "python -m grids.train_descriptor {params.recipe:q} --threads {threads}"
        " --out {output.weights:q} --card {output.card:q} --log-table {output.log_table:q} > {log:q} 2>&1"
