# Stage: the clean image set (embedded photos + dead leaves + a user folder), checked and normalised.


rule clean_images:
    input:
        folder_files=get_clean_image_files,
    output:
        manifest="results/clean/manifest.parquet",
        images=directory("results/clean/images"),
    log:
        "logs/clean_images.log",
    conda:
        "../../environment.yml"
    # Files are checked in parallel; a user's file that needs no conversion is not copied.
    threads: 8
    params:
        images=get_images_json,
        seed=CONFIG["seed"],
    shell:
        "python -m grids.data --images {params.images:q} --seed {params.seed:q}"
        " --threads {threads} --out results/clean > {log:q} 2>&1"
