//! The service's entities, read without amplification: the fields the library acts on as a
//! typed struct (serde skips every other value as it reads, keeping nothing of it), and the
//! entity's JSON exactly as the service sent it, which is what the caller gets.
//!
//! A `serde_json::Value` tree costs tens of bytes for every value in an answer: a 4 MiB machine
//! action made of tiny values (`"x":[{"":0},{"":0},...]`) took about 400 MiB as one. Reading an
//! answer this way costs its text once more at most, whatever it holds. A new kind of answer
//! follows the same pattern: a struct of the fields read (all optional unless the library cannot
//! act without one), and `ApiResponse::entity::<ThoseFields>`.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, DeserializeOwned, DeserializeSeed, IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

/// An entity as the service sent it, and the fields `T` the library reads of it.
#[derive(Debug)]
pub(crate) struct Entity<T> {
    /// The entity's JSON text, as it came: the caller's result.
    pub json: Box<RawValue>,
    pub fields: T,
}

impl<T: DeserializeOwned> Entity<T> {
    /// The entity that `text` holds; without a copy when `text` is exactly one JSON value.
    pub(crate) fn parse(text: String) -> serde_json::Result<Self> {
        let json = RawValue::from_string(text)?;
        let fields = serde_json::from_str(json.get())?;
        Ok(Self { json, fields })
    }
}

impl<T> Entity<T> {
    /// The entity's JSON text, for the caller.
    pub(crate) fn into_json(self) -> String {
        Box::<str>::from(self.json).into_string()
    }
}

/// Each item of a list is its own text, and its fields read from it.
impl<'de, T: DeserializeOwned> Deserialize<'de> for Entity<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let json = Box::<RawValue>::deserialize(deserializer)?;
        let fields = serde_json::from_str(json.get()).map_err(de::Error::custom)?;
        Ok(Self { json, fields })
    }
}

/// `entities` as one JSON array of their texts, as the list calls return them.
pub(crate) fn json_array<T>(entities: &[Entity<T>]) -> String {
    let length = entities.iter().map(|entity| entity.json.get().len() + 1).sum::<usize>() + 2;
    let mut array = String::with_capacity(length);
    array.push('[');
    for (index, entity) in entities.iter().enumerate() {
        if index > 0 {
            array.push(',');
        }
        array.push_str(entity.json.get());
    }
    array.push(']');
    array
}

/// A JSON array of entities, read up to `max` of them: what a list page's `value` holds.
pub(crate) struct Items<T> {
    max: usize,
    entities: PhantomData<T>,
}

/// The items read, and whether the array held more than were read.
pub(crate) struct ReadItems<T> {
    pub entities: Vec<Entity<T>>,
    pub more: bool,
}

impl<T> Items<T> {
    pub(crate) fn at_most(max: usize) -> Self {
        Self { max, entities: PhantomData }
    }
}

impl<'de, T: DeserializeOwned> DeserializeSeed<'de> for Items<T> {
    type Value = ReadItems<T>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de, T: DeserializeOwned> Visitor<'de> for Items<T> {
    type Value = ReadItems<T>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("an array of entities")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<Self::Value, A::Error> {
        // A page asked for at most `max` items: room for them, and never for more.
        let mut entities = Vec::with_capacity(items.size_hint().unwrap_or(0).min(self.max).min(1024));
        while entities.len() < self.max {
            match items.next_element()? {
                Some(entity) => entities.push(entity),
                None => return Ok(ReadItems { entities, more: false }),
            }
        }
        // The rest is skipped as it is read, keeping nothing of it.
        let mut more = false;
        while items.next_element::<IgnoredAny>()?.is_some() {
            more = true;
        }
        Ok(ReadItems { entities, more })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Named {
        name: Option<String>,
    }

    #[test]
    fn an_entity_keeps_its_text_as_it_came_and_reads_only_its_fields() {
        let text = r#"{ "z": [1, {"deep": null}], "name": "a\u00e9", "x": 1.50 }"#;
        let entity = Entity::<Named>::parse(format!("  {text}\n")).unwrap();
        assert_eq!(entity.fields, Named { name: Some("aé".to_owned()) });
        assert_eq!(entity.into_json(), text, "the service's own text, spacing and escapes and all");
        assert!(Entity::<Named>::parse(r#"{"name": 5}"#.to_owned()).is_err(), "a field of the wrong type");
        assert!(Entity::<Named>::parse("{} {}".to_owned()).is_err(), "one value only");
    }

    #[test]
    fn items_are_read_up_to_their_maximum_and_more_is_told() {
        let read = |text: &str, max: usize| {
            let mut reader = serde_json::Deserializer::from_str(text);
            Items::<IgnoredAny>::at_most(max).deserialize(&mut reader).map(|read| {
                let texts: Vec<String> = read.entities.into_iter().map(Entity::into_json).collect();
                (texts, read.more)
            })
        };
        assert_eq!(
            read(r#"[{"a":1}, 2 ,"x"]"#, 3).unwrap(),
            (vec![r#"{"a":1}"#.into(), "2".into(), r#""x""#.into()], false)
        );
        assert_eq!(read("[1,2,3]", 2).unwrap(), (vec!["1".into(), "2".into()], true));
        assert_eq!(read("[]", 0).unwrap(), (vec![], false));
        assert!(read(r#"{"a":1}"#, 3).is_err(), "not an array");
    }

    #[test]
    fn a_json_array_joins_the_texts() {
        let entities: Vec<Entity<IgnoredAny>> = serde_json::from_str(r#"[ {"a" : 1} , [] ]"#).unwrap();
        assert_eq!(json_array(&entities), r#"[{"a" : 1},[]]"#);
        assert_eq!(json_array::<IgnoredAny>(&[]), "[]");
    }
}
