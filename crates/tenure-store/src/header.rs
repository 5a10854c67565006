//! A struct's serialised fields minus one: how a plan is stored without its
//! operations (they are the plan's queue rows, so they are not stored twice).
//!
//! [`fields_without`] runs the value's own `Serialize` implementation through
//! a serializer that accepts only a struct and keeps each field as JSON, so
//! fields added to the struct later are stored without this crate changing,
//! and nothing is cloned. It does not handle anything but plain structs.

use serde::Serialize;
use serde::ser::{self, Impossible, SerializeStruct, Serializer};
use serde_json::{Error, Map, Value};

/// The fields of `value` (a struct) as JSON, except `skip`.
pub(crate) fn fields_without<T: Serialize>(
    value: &T,
    skip: &'static str,
) -> Result<Map<String, Value>, Error> {
    value.serialize(Fields { skip })
}

struct Fields {
    skip: &'static str,
}

struct Collect {
    skip: &'static str,
    map: Map<String, Value>,
}

fn not_a_struct() -> Error {
    ser::Error::custom("only a struct can be stored field by field")
}

macro_rules! refuse {
    ($($name:ident($($arg:ty),*)),* $(,)?) => {
        $(fn $name(self, $(_: $arg),*) -> Result<Self::Ok, Error> { Err(not_a_struct()) })*
    };
}

impl Serializer for Fields {
    type Ok = Map<String, Value>;
    type Error = Error;
    type SerializeSeq = Impossible<Self::Ok, Error>;
    type SerializeTuple = Impossible<Self::Ok, Error>;
    type SerializeTupleStruct = Impossible<Self::Ok, Error>;
    type SerializeTupleVariant = Impossible<Self::Ok, Error>;
    type SerializeMap = Impossible<Self::Ok, Error>;
    type SerializeStruct = Collect;
    type SerializeStructVariant = Impossible<Self::Ok, Error>;

    refuse!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_char(char),
        serialize_str(&str),
        serialize_bytes(&[u8]),
        serialize_none(),
        serialize_unit(),
        serialize_unit_struct(&'static str),
        serialize_unit_variant(&'static str, u32, &'static str),
    );

    fn serialize_some<T: ?Sized + Serialize>(self, _: &T) -> Result<Self::Ok, Error> {
        Err(not_a_struct())
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: &T,
    ) -> Result<Self::Ok, Error> {
        Err(not_a_struct())
    }
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<Self::Ok, Error> {
        Err(not_a_struct())
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Error> {
        Err(not_a_struct())
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Error> {
        Err(not_a_struct())
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, Error> {
        Err(not_a_struct())
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Error> {
        Err(not_a_struct())
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Error> {
        Err(not_a_struct())
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Collect, Error> {
        Ok(Collect {
            skip: self.skip,
            map: Map::new(),
        })
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Error> {
        Err(not_a_struct())
    }
}

impl SerializeStruct for Collect {
    type Ok = Map<String, Value>;
    type Error = Error;

    fn serialize_field<T: ?Sized + Serialize>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        if key != self.skip {
            self.map
                .insert(key.to_owned(), serde_json::to_value(value)?);
        }
        Ok(())
    }

    fn end(self) -> Result<Self::Ok, Error> {
        Ok(self.map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct S {
        a: u32,
        big: Vec<u32>,
        #[serde(rename = "c")]
        cc: Option<String>,
    }

    #[test]
    fn skips_one_field() {
        let m = fields_without(
            &S {
                a: 1,
                big: vec![1, 2, 3],
                cc: None,
            },
            "big",
        );
        let m = m.map(Value::Object).unwrap_or_default();
        assert_eq!(m, serde_json::json!({"a": 1, "c": null}));
        assert!(fields_without(&5u32, "x").is_err());
    }
}
