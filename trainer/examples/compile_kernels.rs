//! Compiles kernels.cu with NVRTC for sm_90 without a GPU, to catch CUDA C errors on a machine
//! that has only the NVRTC library (e.g. from the `nvidia-cuda-nvrtc` wheel):
//! `LD_LIBRARY_PATH=…/nvidia/cu13/lib cargo run -p walsh-trainer --features cuda --example compile_kernels`

fn main() {
    match walsh_trainer::backend::cuda::compile_kernels(9, 0) {
        Ok(ptx) => println!("kernels.cu: {} bytes of PTX for sm_90", ptx.to_src().len()),
        Err(e) => {
            eprintln!("kernels.cu does not compile: {e}");
            std::process::exit(1);
        }
    }
}
