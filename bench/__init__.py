"""The lab's benchmarks on held-out real audio (tasks 1-5, speed, throughput, server); results in bench/results/."""
