//! ONNX models made in the test, for what no bundled model does: a model that is slow on
//! purpose (a chain of large matrix products), to test deadlines during inference.

use tract_onnx::pb::tensor_shape_proto::{Dimension, dimension};
use tract_onnx::pb::type_proto::{self, Value};
use tract_onnx::pb::{
    GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};

const FLOAT: i32 = 1;

fn tensor_value(name: &str, dims: &[i64]) -> ValueInfoProto {
    typed_value(name, FLOAT, dims)
}

fn typed_value(name: &str, elem_type: i32, dims: &[i64]) -> ValueInfoProto {
    let dim =
        dims.iter().map(|&d| Dimension { value: Some(dimension::Value::DimValue(d)), ..Default::default() }).collect();
    let tensor = type_proto::Tensor { elem_type, shape: Some(TensorShapeProto { dim }) };
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto { value: Some(Value::TensorType(tensor)), ..Default::default() }),
        ..Default::default()
    }
}

/// The model of `graph` (opset 13), encoded.
fn encoded(graph: GraphProto) -> Vec<u8> {
    use prost::Message;
    let model = ModelProto {
        ir_version: 7,
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 13 }],
        producer_name: "edgenn tests".into(),
        graph: Some(graph),
        ..Default::default()
    };
    model.encode_to_vec()
}

/// A node named after its one output.
fn node(op: &str, input: &[&str], output: &str) -> NodeProto {
    NodeProto {
        name: output.into(),
        op_type: op.into(),
        input: input.iter().map(|i| i.to_string()).collect(),
        output: vec![output.into()],
        ..Default::default()
    }
}

/// A constant tensor of `data_type` with its raw little-endian bytes.
fn constant(name: &str, dims: &[i64], data_type: i32, raw_data: Vec<u8>) -> TensorProto {
    TensorProto { name: name.into(), dims: dims.to_vec(), data_type, raw_data, ..Default::default() }
}

/// `x: f32[rows, width]` multiplied `steps` times by a constant `width x width` matrix: about
/// `2 * rows * width^2 * steps` floating-point operations per run, whatever the backend.
pub fn slow_matmul_chain(rows: i64, width: i64, steps: usize) -> Vec<u8> {
    // Small enough that the values stay finite along the chain.
    let raw = (0..width * width).flat_map(|_| (1.0f32 / width as f32).to_le_bytes()).collect();
    let weights = constant("w", &[width, width], FLOAT, raw);
    let mut previous = "x".to_string();
    let mut node = Vec::new();
    for i in 0..steps {
        let output = format!("h{i}");
        node.push(NodeProto {
            name: format!("matmul{i}"),
            op_type: "MatMul".into(),
            input: vec![previous.clone(), "w".into()],
            output: vec![output.clone()],
            ..Default::default()
        });
        previous = output;
    }
    let graph = GraphProto {
        name: "slow".into(),
        node,
        initializer: vec![weights],
        input: vec![tensor_value("x", &[rows, width])],
        output: vec![tensor_value(&previous, &[rows, width])],
        ..Default::default()
    };
    encoded(graph)
}

/// A model of a few hundred bytes that grows when loaded: `Expand` of a one-element constant to
/// `side x side` floats (4 GiB at 32768), summed and added to the input `x: f32[1, 1]`. Both
/// inputs of the `Expand` are constants, so a backend that folds constants while loading
/// materialises the whole tensor then.
pub fn load_bomb(side: i64) -> Vec<u8> {
    const INT64: i32 = 7;
    let one = constant("one", &[1], FLOAT, 1.0f32.to_le_bytes().to_vec());
    let shape = constant("shape", &[2], INT64, [side, side].iter().flat_map(|d| d.to_le_bytes()).collect());
    let graph = GraphProto {
        name: "bomb".into(),
        node: vec![
            node("Expand", &["one", "shape"], "big"),
            node("ReduceSum", &["big"], "sum"),
            node("Add", &["x", "sum"], "y"),
        ],
        initializer: vec![one, shape],
        input: vec![tensor_value("x", &[1, 1])],
        output: vec![tensor_value("y", &[1, 1])],
        ..Default::default()
    };
    encoded(graph)
}

/// `ids: i32[1, 32]` looked up in a constant table of `rows x 4` floats (`Gather`), with no
/// `range` declared for it: an id past the table reaches the backend as it is.
pub fn lookup_table(rows: i64) -> Vec<u8> {
    const INT32: i32 = 6;
    let table = constant("table", &[rows, 4], FLOAT, (0..rows * 4).flat_map(|i| (i as f32).to_le_bytes()).collect());
    let graph = GraphProto {
        name: "lookup".into(),
        node: vec![node("Gather", &["table", "ids"], "rows")],
        initializer: vec![table],
        input: vec![typed_value("ids", INT32, &[1, 32])],
        output: vec![tensor_value("rows", &[1, 32, 4])],
        ..Default::default()
    };
    encoded(graph)
}
