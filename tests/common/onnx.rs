//! ONNX models made in the test, for what no bundled model does: a model that is slow on
//! purpose (a chain of large matrix products), to test deadlines during inference.

use tract_onnx::pb::tensor_shape_proto::{Dimension, dimension};
use tract_onnx::pb::type_proto::{self, Value};
use tract_onnx::pb::{
    GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};

const FLOAT: i32 = 1;

fn tensor_value(name: &str, dims: &[i64]) -> ValueInfoProto {
    let dim =
        dims.iter().map(|&d| Dimension { value: Some(dimension::Value::DimValue(d)), ..Default::default() }).collect();
    let tensor = type_proto::Tensor { elem_type: FLOAT, shape: Some(TensorShapeProto { dim }) };
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto { value: Some(Value::TensorType(tensor)), ..Default::default() }),
        ..Default::default()
    }
}

/// `x: f32[rows, width]` multiplied `steps` times by a constant `width x width` matrix: about
/// `2 * rows * width^2 * steps` floating-point operations per run, whatever the backend.
pub fn slow_matmul_chain(rows: i64, width: i64, steps: usize) -> Vec<u8> {
    use prost::Message;
    let weights = TensorProto {
        name: "w".into(),
        dims: vec![width, width],
        data_type: FLOAT,
        // Small enough that the values stay finite along the chain.
        raw_data: (0..width * width).flat_map(|_| (1.0f32 / width as f32).to_le_bytes()).collect(),
        ..Default::default()
    };
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
    let model = ModelProto {
        ir_version: 7,
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 13 }],
        producer_name: "edgenn tests".into(),
        graph: Some(graph),
        ..Default::default()
    };
    model.encode_to_vec()
}
