# Stage: the clean image set (embedded photos + dead leaves + a user folder), checked and normalised.
# Rules train_clean_images and test_clean_images (train.smk) are this rule for other image sets.


rule clean_images:
    input:
        folder_files=get_clean_image_files,
    output:
        manifest="results/clean/manifest.parquet",
        images=directory("results/clean/images"),
    log:
        "logs/clean_images.log",
    # Clean sets, degraded sets and the crop store come before everything (see get_search_priority).
    priority: 1
    conda:
        "../envs/grids.yaml"
    # Files are checked in parallel; a user's file that needs no conversion is not copied.
    threads: side_by_side_threads(8)
    params:
        images=get_images_json,
        dataset="similarity",
        seed=CONFIG["data_seed"],
        # The user files that passed, by content: kept between runs (not an output, which
        # Snakemake would delete first), so a rerun hashes an unchanged file instead of decoding it.
        checks=get_checks_cache,
    shell:
        "python -m grids.data --images {params.images:q} --seed {params.seed:q} --dataset {params.dataset:q}"
        " --threads {threads} --manifest {output.manifest:q} --images-dir {output.images:q}"
        " --checks {params.checks:q} > {log:q} 2>&1"
