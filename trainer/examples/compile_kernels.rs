//! Compiles the CUDA backend's kernels (every `.cu` file of trainer/src/backend/cuda, as the one
//! program the backend compiles) with NVRTC for sm_90 without a GPU, to catch CUDA C errors on a
//! machine that has only the NVRTC library (e.g. from the `nvidia-cuda-nvrtc` wheel):
//! `LD_LIBRARY_PATH=…/nvidia/cu13/lib cargo run -p walsh-trainer --features cuda --example compile_kernels [OUT.ptx]`
//! With a path, it writes the PTX there, for `ptxas -arch=sm_90` (the `nvidia-cuda-nvcc` wheel)
//! to check the inline assembly that NVRTC passes through unread.

fn main() {
    match walsh_trainer::backend::cuda::compile_kernels(9, 0) {
        Ok(ptx) => {
            let src = ptx.to_src();
            println!("CUDA kernels: {} bytes of PTX for sm_90", src.len());
            if let Some(path) = std::env::args().nth(1)
                && let Err(e) = std::fs::write(&path, src)
            {
                eprintln!("cannot write {path}: {e}");
                std::process::exit(1);
            }
        }
        Err(e) => {
            eprintln!("the CUDA kernels do not compile: {e}");
            std::process::exit(1);
        }
    }
}
