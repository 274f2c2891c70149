-- A residency failure's sample: the id, and the country that should not be here.
'id=' || id || ' country=' || country
