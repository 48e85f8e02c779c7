//! Reading a body in large blocks that the runtime fills itself.
//!
//! Reading a stream chunk by chunk from the Worker costs the runtime a
//! promise and a call per chunk of a few kilobytes: 17 ms of CPU per MB of a
//! pushed layer, measured under `wrangler dev`. A bring-your-own-buffer reader
//! with the runtime's `readAtLeast` fills a whole block in one call, and the
//! bytes stay in JavaScript, so WebAssembly memory never grows to hold them.

use js_sys::{Promise, Reflect, Uint8Array};
use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

#[wasm_bindgen]
extern "C" {
    /// `ReadableStreamBYOBReader`, with the Workers runtime's `readAtLeast`.
    #[wasm_bindgen(js_name = ReadableStreamBYOBReader)]
    type ByobReader;
    #[wasm_bindgen(method, js_name = readAtLeast)]
    fn read_at_least(this: &ByobReader, min_bytes: u32, view: Uint8Array) -> Promise;
}

/// A block is first read this far: a body that ends within it (most blobs
/// of a push are small: configs, short layers) never allocates a whole
/// block, which the isolate's memory limit would count in full.
const PROBE: u32 = 64 * 1024;

/// Cuts a byte stream into blocks of `size` bytes (the last may be shorter).
pub struct BlockReader {
    reader: ByobReader,
    size: u32,
    finished: bool,
}

impl BlockReader {
    /// Locks `stream` to this reader.
    pub fn new(stream: &web_sys::ReadableStream, size: u32) -> Self {
        let options = web_sys::ReadableStreamGetReaderOptions::new();
        options.set_mode(web_sys::ReadableStreamReaderMode::Byob);
        BlockReader {
            reader: stream.get_reader_with_options(&options).unchecked_into(),
            size,
            finished: false,
        }
    }

    /// The next block, `None` once the stream has ended. A block is shorter
    /// than `size` only at the end of the stream.
    pub async fn next_block(&mut self) -> Result<Option<Uint8Array>, JsValue> {
        let probe = self.size.min(PROBE);
        let Some(head) = self.fill(Uint8Array::new_with_length(probe)).await? else {
            return Ok(None);
        };
        if self.finished || probe == self.size {
            return Ok(Some(head));
        }
        // The rest of the block, read into the same buffer after the head.
        let block = Uint8Array::new_with_length(self.size);
        block.set(&head, 0);
        let rest =
            Uint8Array::new_with_byte_offset_and_length(&block.buffer(), probe, self.size - probe);
        Ok(Some(match self.fill(rest).await? {
            None => head,
            // Reading moved the buffer (the streams standard transfers it),
            // with the head where it was written.
            Some(tail) if tail.byte_offset() == probe => {
                Uint8Array::new_with_byte_offset_and_length(
                    &tail.buffer(),
                    0,
                    probe + tail.length(),
                )
            }
            Some(tail) => {
                let block = Uint8Array::new_with_length(probe + tail.length());
                block.set(&head, 0);
                block.set(&tail, probe);
                block
            }
        }))
    }

    /// Fills `view` (fewer bytes only at the end of the stream): the bytes
    /// read, in a view on the same memory, or `None` when none were left.
    async fn fill(&mut self, view: Uint8Array) -> Result<Option<Uint8Array>, JsValue> {
        if self.finished {
            return Ok(None);
        }
        let wanted = view.length();
        let read = JsFuture::from(self.reader.read_at_least(wanted, view)).await?;
        let done = Reflect::get(&read, &"done".into())?.is_truthy();
        let bytes = match Reflect::get(&read, &"value".into())?.dyn_into::<Uint8Array>() {
            Ok(bytes) if !done => bytes,
            _ => {
                self.finished = true;
                return Ok(None);
            }
        };
        self.finished = bytes.length() < wanted;
        Ok((bytes.length() > 0).then_some(bytes))
    }
}
