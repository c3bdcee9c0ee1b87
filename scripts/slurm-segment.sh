#!/usr/bin/env bash
# A SLURM job array that segments a folder of micrographs in N shards, then merges them.
#   sbatch --array=1-N scripts/slurm-segment.sh INPUT_FOLDER OUTPUT_FOLDER [extra segment flags]
# Each task writes OUTPUT_FOLDER/shard-K; after the array, run
#   nanofind merge OUTPUT_FOLDER/shard-* -o OUTPUT_FOLDER/all
# (or submit the merge with --dependency=afterok:<array job id>, as scripts/slurm-test.sh does).
#SBATCH --job-name=nanofind
#SBATCH --cpus-per-task=2
#SBATCH --mem=8G
#SBATCH --output=nanofind-%A_%a.log
set -euo pipefail
INPUT=$1; OUTPUT=$2; shift 2
N=${SLURM_ARRAY_TASK_COUNT:?submit as an array: sbatch --array=1-N}
K=${SLURM_ARRAY_TASK_ID:?submit as an array: sbatch --array=1-N}
NANOFIND=${NANOFIND:-nanofind}
"$NANOFIND" segment "$INPUT" -o "$OUTPUT/shard-$K" --shard "$K/$N" --threads "${SLURM_CPUS_PER_TASK:-2}" "$@"
