//! The scenarios of `canister.rs` against a real PocketIC server (through the `pocket-ic` crate)
//! instead of our wasmtime harness. They are built only with the `pocket-ic` feature (so a plain
//! `cargo test` neither builds nor counts them) and then need `POCKET_IC_BIN` naming a PocketIC
//! server binary: without it each test fails, saying so.
//!
//! `POCKET_IC_BIN=/path/to/pocket-ic cargo test -p walsh-tests --features pocket-ic --test canister_pocket_ic`

#[cfg(feature = "pocket-ic")]
mod scenarios {
    use candid::{CandidType, Decode, Deserialize, Encode, Principal};
    use pocket_ic::{PocketIc, PocketIcBuilder, RejectResponse};
    use sha2::{Digest, Sha256};
    use walsh_engine::{Engine, SamplingParams};
    use walsh_interface::*;
    use walsh_spec::PackOptions;
    use walsh_tests::fixtures::{controller, native_tokens, random_blob as blob, stranger};
    use walsh_tests::root;

    /// A PocketIC instance (one application subnet) and the installed canister.
    struct Ic {
        pic: PocketIc,
        id: Principal,
    }

    /// The canister installed on a fresh PocketIC instance with `controller()` as its controller.
    /// Panics where no PocketIC server binary is given: a scenario that cannot run must not pass.
    fn installed(test: &str) -> Ic {
        assert!(
            std::env::var_os("POCKET_IC_BIN").is_some(),
            "{test} needs POCKET_IC_BIN naming a PocketIC server binary"
        );
        let pic = PocketIcBuilder::new().with_application_subnet().build();
        // Created by the controller (so it is the controller), with 100T cycles.
        let id = pic.create_canister_with_settings(Some(controller()), None);
        // Large modules go through the chunk store (the crate does that by itself).
        pic.install_canister(
            id,
            walsh_tests::canister_wasm().to_vec(),
            Encode!().unwrap(),
            Some(controller()),
        );
        Ic { pic, id }
    }

    fn query<T: CandidType + for<'de> Deserialize<'de>>(
        ic: &Ic,
        caller: Principal,
        method: &str,
        arg: Vec<u8>,
    ) -> T {
        let bytes = ic
            .pic
            .query_call(ic.id, caller, method, arg)
            .unwrap_or_else(|e| panic!("query {method} rejected (a trap?): {e}"));
        Decode!(&bytes, T).expect("decodes")
    }

    fn update<T: CandidType + for<'de> Deserialize<'de>>(
        ic: &Ic,
        caller: Principal,
        method: &str,
        arg: Vec<u8>,
    ) -> Result<T, RejectResponse> {
        ic.pic
            .update_call(ic.id, caller, method, arg)
            .map(|bytes| Decode!(&bytes, T).expect("decodes"))
    }

    fn generate(ic: &Ic, prompt: &str, max: u32) -> GenerateResult {
        query(
            ic,
            Principal::anonymous(),
            "generate",
            Encode!(&prompt.to_string(), &max).unwrap(),
        )
    }

    fn generate_with(ic: &Ic, req: GenerateRequest) -> GenerateResult {
        query(
            ic,
            Principal::anonymous(),
            "generate_with",
            Encode!(&req).unwrap(),
        )
    }

    fn ok(r: GenerateResult) -> Generation {
        match r {
            GenerateResult::Ok(g) => g,
            GenerateResult::Err(e) => panic!("generate failed: {e}"),
        }
    }

    fn err(r: GenerateResult) -> String {
        match r {
            GenerateResult::Ok(g) => panic!("expected an error, got {g:?}"),
            GenerateResult::Err(e) => e.to_string(),
        }
    }

    fn model_info(ic: &Ic) -> ModelInfo {
        match query(ic, Principal::anonymous(), "model_info", Encode!().unwrap()) {
            ModelInfoResult::Ok(i) => i,
            ModelInfoResult::Err(e) => panic!("model_info: {e}"),
        }
    }

    fn upload_status(ic: &Ic) -> Option<UploadStatus> {
        match query(ic, controller(), "upload_status", Encode!().unwrap()) {
            UploadStatusResult::Ok(s) => s,
            UploadStatusResult::Err(e) => panic!("upload_status: {e}"),
        }
    }

    fn begin(ic: &Ic, bytes_len: usize, sha: Vec<u8>, chunk: u32) -> UploadResult {
        let req = UploadBegin {
            total_size: bytes_len as u64,
            sha256: serde_bytes::ByteBuf::from(sha),
            chunk_size: chunk,
        };
        update(ic, controller(), "upload_begin", Encode!(&req).unwrap()).unwrap()
    }

    fn chunk(ic: &Ic, index: u32, data: &[u8]) -> UploadResult {
        let req = UploadChunk {
            index,
            data: serde_bytes::ByteBuf::from(data.to_vec()),
        };
        update(ic, controller(), "upload_chunk", Encode!(&req).unwrap()).unwrap()
    }

    fn commit(ic: &Ic) -> CommitResult {
        update(ic, controller(), "upload_commit", Encode!().unwrap()).unwrap()
    }

    /// Uploads `bytes` in chunks sent in reverse order, with chunk 0 sent twice; returns the
    /// commit.
    fn upload(ic: &Ic, bytes: &[u8], chunk_size: u32) -> CommitResult {
        let sha = Sha256::digest(bytes).to_vec();
        assert!(matches!(
            begin(ic, bytes.len(), sha, chunk_size),
            UploadResult::Ok(_)
        ));
        let chunks: Vec<&[u8]> = bytes.chunks(chunk_size as usize).collect();
        for (i, c) in chunks.iter().enumerate().rev() {
            assert!(matches!(chunk(ic, i as u32, c), UploadResult::Ok(_)));
        }
        assert!(matches!(chunk(ic, 0, chunks[0]), UploadResult::Ok(_)));
        commit(ic)
    }

    #[test]
    fn embedded_model_generates_like_the_native_engine() {
        let ic = installed("embedded_model_generates_like_the_native_engine");
        let info = model_info(&ic);
        assert!(matches!(info.source, ModelSource::Embedded));
        assert_eq!(info.config.name, "bpe4k-octonion-14x288");
        let g = ok(generate(&ic, "Once upon a time", 100));
        assert_eq!(g.prompt_tokens, 4);
        assert!(matches!(
            g.finish_reason,
            FinishReason::Length | FinishReason::Eos
        ));
        assert!(g.instructions > 0);
        let default = std::fs::read(root().join("models/walsh-default.walsh")).unwrap();
        assert_eq!(g.tokens, native_tokens(&default, "Once upon a time", 100));
        eprintln!(
            "PocketIC: generate(\"Once upon a time\", 100) on the default model: {} tokens in ONE query, {} instructions, finish {:?}",
            g.generated_tokens, g.instructions, g.finish_reason
        );
    }

    #[test]
    fn upload_out_of_order_with_duplicates_then_upgrade() {
        let ic = installed("upload_out_of_order_with_duplicates_then_upgrade");
        let tiny = blob("tiny.toml", &[], 5, PackOptions::default());
        assert!(upload_status(&ic).is_none());
        let sha = Sha256::digest(&tiny).to_vec();
        let chunk_size = 256 * 1024;
        assert!(matches!(
            begin(&ic, tiny.len(), sha, chunk_size),
            UploadResult::Ok(_)
        ));
        let chunks: Vec<&[u8]> = tiny.chunks(chunk_size as usize).collect();
        let n = chunks.len() as u32;
        // All but chunk 1, in reverse, chunk 3 twice; the status says what is missing.
        for i in (0..n).rev().filter(|&i| i != 1) {
            assert!(matches!(
                chunk(&ic, i, chunks[i as usize]),
                UploadResult::Ok(_)
            ));
        }
        assert!(matches!(chunk(&ic, 3, chunks[3]), UploadResult::Ok(_)));
        let status = upload_status(&ic).expect("upload in progress");
        assert_eq!(status.missing, vec![ChunkRange { start: 1, end: 2 }]);
        assert_eq!(status.received, n - 1);
        // Committing now is refused, and the embedded model still answers.
        match commit(&ic) {
            CommitResult::Err(e) => {
                assert!(
                    e.to_string().contains("missing") && e.to_string().contains("still serving"),
                    "{e}"
                )
            }
            CommitResult::Ok(_) => panic!("incomplete upload committed"),
        }
        assert!(matches!(model_info(&ic).source, ModelSource::Embedded));
        assert!(matches!(chunk(&ic, 1, chunks[1]), UploadResult::Ok(_)));
        let info = match commit(&ic) {
            CommitResult::Ok(i) => i,
            CommitResult::Err(e) => panic!("commit: {e}"),
        };
        assert_eq!(info.config.name, "tiny");
        assert!(matches!(info.source, ModelSource::Uploaded { by, .. } if by == controller()));
        let info = model_info(&ic);
        assert_eq!(info.config.name, "tiny");
        assert!(matches!(info.source, ModelSource::Uploaded { by, .. } if by == controller()));
        let want = native_tokens(&tiny, "Once upon a time", 20);
        assert_eq!(ok(generate(&ic, "Once upon a time", 20)).tokens, want);

        // An upgrade keeps the uploaded model.
        ic.pic
            .upgrade_canister(
                ic.id,
                walsh_tests::canister_wasm().to_vec(),
                Encode!().unwrap(),
                Some(controller()),
            )
            .expect("upgrade");
        let info = model_info(&ic);
        assert_eq!(info.config.name, "tiny");
        assert!(matches!(info.source, ModelSource::Uploaded { .. }));
        assert_eq!(ok(generate(&ic, "Once upon a time", 20)).tokens, want);
    }

    #[test]
    fn refused_commits_keep_the_serving_model() {
        let ic = installed("refused_commits_keep_the_serving_model");
        let tiny = blob("tiny.toml", &[], 6, PackOptions::default());
        // Declared SHA-256 does not match what arrives.
        assert!(matches!(
            begin(&ic, tiny.len(), vec![7; 32], 1 << 20),
            UploadResult::Ok(_)
        ));
        for (i, c) in tiny.chunks(1 << 20).enumerate() {
            assert!(matches!(chunk(&ic, i as u32, c), UploadResult::Ok(_)));
        }
        match commit(&ic) {
            CommitResult::Err(e) => assert!(
                e.to_string().contains("SHA-256 mismatch")
                    && e.to_string().contains("still serving"),
                "{e}"
            ),
            CommitResult::Ok(_) => panic!("wrong SHA-256 committed"),
        }
        assert!(matches!(model_info(&ic).source, ModelSource::Embedded));
        ok(generate(&ic, "Hello", 3));

        // A corrupted blob, sent with the SHA-256 of its corrupted bytes: the reader refuses it.
        let mut bad = tiny.clone();
        let mid = bad.len() / 2;
        bad[mid] ^= 0x40;
        match upload(&ic, &bad, 1 << 20) {
            CommitResult::Err(e) => assert!(
                e.to_string().contains("invalid blob") && e.to_string().contains("still serving"),
                "{e}"
            ),
            CommitResult::Ok(_) => panic!("corrupted blob committed"),
        }
        assert!(matches!(model_info(&ic).source, ModelSource::Embedded));
        ok(generate(&ic, "Hello", 3));

        // Abort drops the upload; a chunk after that is refused.
        let r: AbortResult = update(&ic, controller(), "upload_abort", Encode!().unwrap()).unwrap();
        assert!(matches!(r, AbortResult::Ok));
        match chunk(&ic, 0, &tiny[..1024]) {
            UploadResult::Err(e) => assert!(e.to_string().contains("upload_begin"), "{e}"),
            UploadResult::Ok(_) => panic!("chunk without upload accepted"),
        }
    }

    #[test]
    fn non_controllers_cannot_upload() {
        let ic = installed("non_controllers_cannot_upload");
        let req = UploadBegin {
            total_size: 4096,
            sha256: serde_bytes::ByteBuf::from(vec![0; 32]),
            chunk_size: 1024,
        };
        for method in [
            "upload_begin",
            "upload_chunk",
            "upload_commit",
            "upload_abort",
        ] {
            let arg = match method {
                "upload_begin" => Encode!(&req).unwrap(),
                "upload_chunk" => Encode!(&UploadChunk {
                    index: 0,
                    data: serde_bytes::ByteBuf::from(vec![0; 1024]),
                })
                .unwrap(),
                _ => Encode!().unwrap(),
            };
            // An ingress update passes `canister_inspect_message`, which traps for strangers;
            // where a server skipped it, the method itself answers `Err("... not a controller")`.
            let refusal = match ic.pic.update_call(ic.id, stranger(), method, arg) {
                Err(reject) => reject.reject_message,
                Ok(bytes) => match method {
                    "upload_begin" | "upload_chunk" => match Decode!(&bytes, UploadResult) {
                        Ok(UploadResult::Err(e)) => e.to_string(),
                        other => panic!("{method} by a stranger: {other:?}"),
                    },
                    "upload_commit" => match Decode!(&bytes, CommitResult) {
                        Ok(CommitResult::Err(e)) => e.to_string(),
                        other => panic!("{method} by a stranger: {other:?}"),
                    },
                    _ => match Decode!(&bytes, AbortResult) {
                        Ok(AbortResult::Err(e)) => e.to_string(),
                        other => panic!("{method} by a stranger: {other:?}"),
                    },
                },
            };
            assert!(refusal.contains("not a controller"), "{method}: {refusal}");
        }
        assert!(matches!(model_info(&ic).source, ModelSource::Embedded));
        assert!(upload_status(&ic).is_none());
    }

    #[test]
    fn bad_inputs_get_clear_answers() {
        let ic = installed("bad_inputs_get_clear_answers");
        let g = ok(generate(&ic, "", 5));
        assert_eq!(g.prompt_tokens, 0);
        let g = ok(generate(&ic, "Once", 0));
        assert_eq!(
            (g.generated_tokens, g.finish_reason),
            (0, FinishReason::Length)
        );
        let e = err(generate(&ic, &"word ".repeat(300), 10));
        assert!(
            e.to_string().contains("prompt is 302 tokens") && e.to_string().contains("255"),
            "{e}"
        );
        let e = err(generate(&ic, &"x".repeat(100_000), 10));
        assert!(e.to_string().contains("100000 bytes"), "{e}");
        let e = err(generate_with(
            &ic,
            GenerateRequest {
                prompt: "Hi".into(),
                max_tokens: 5,
                temperature: Some(-1.0),
                top_k: None,
                top_p: None,
                seed: None,
                stop: None,
                repeat_penalty: None,
                repeat_last_n: None,
            },
        ));
        assert!(e.to_string().contains("temperature"), "{e}");
        match begin(&ic, 10, vec![0; 32], 3_000_000) {
            UploadResult::Err(e) => assert!(e.to_string().contains("chunk_size"), "{e}"),
            UploadResult::Ok(_) => panic!("oversized chunk size accepted"),
        }
        match begin(&ic, 10, vec![0; 5], 1024) {
            UploadResult::Err(e) => assert!(e.to_string().contains("sha256"), "{e}"),
            UploadResult::Ok(_) => panic!("short sha accepted"),
        }
    }

    #[test]
    fn sampling_matches_the_native_engine() {
        let ic = installed("sampling_matches_the_native_engine");
        let req = GenerateRequest {
            prompt: "Once upon a time".into(),
            max_tokens: 30,
            temperature: Some(0.9),
            top_k: Some(40),
            top_p: Some(0.95),
            seed: Some(11),
            stop: None,
            repeat_penalty: None,
            repeat_last_n: None,
        };
        let a = ok(generate_with(&ic, req.clone()));
        let b = ok(generate_with(&ic, req));
        assert_eq!(a.tokens, b.tokens, "same seed, same tokens");
        let default = std::fs::read(root().join("models/walsh-default.walsh")).unwrap();
        let params = SamplingParams {
            temperature: 0.9,
            top_k: 40,
            top_p: 0.95,
            seed: 11,
            ..SamplingParams::default()
        };
        let native = Engine::load(&default)
            .unwrap()
            .generate("Once upon a time", 30, params, &[], |_| true)
            .unwrap();
        assert_eq!(a.tokens, native.tokens);
    }

    #[test]
    fn budget_ends_generation_cleanly() {
        let ic = installed("budget_ends_generation_cleanly");
        // The default config with a 2048-token context: far more tokens than fit one query.
        let long = blob(
            "tinystories-hadamard-hash.toml",
            &["block_size=2048"],
            8,
            PackOptions {
                embeddings: walsh_spec::blob::DType::Int8,
                ..PackOptions::default()
            },
        );
        assert!(matches!(upload(&ic, &long, 1_900_000), CommitResult::Ok(_)));
        // A reject here would be a trap (the query's instruction limit): the canister must stop
        // on its own budget first.
        let g = ok(generate(&ic, "Once upon a time", 2000));
        assert_eq!(
            g.finish_reason,
            FinishReason::Budget,
            "{} tokens",
            g.generated_tokens
        );
        assert!(g.instructions < 5_000_000_000);
        eprintln!(
            "PocketIC budget: {} tokens fit one query ({} instructions of 5e9)",
            g.generated_tokens, g.instructions
        );
        let g = ok(generate(&ic, &"word ".repeat(1500), 10));
        assert!(matches!(
            g.finish_reason,
            FinishReason::Budget | FinishReason::Length
        ));
    }
}
